package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/provisioner"
)

type offersOptions struct {
	providers []string
	class     string
	gpu       string
	count     int
	minMemory float64
	maxPrice  float64
	disk      int
	region    string
	limit     int
	output    string
}

func newOffersCmd(g *globalFlags, getenv config.Getenv) *cobra.Command {
	o := offersOptions{}
	cmd := &cobra.Command{
		Use:   "offers",
		Short: "List the cheapest offers that fit a class, to see what a job will cost",
		Long: `offers asks the providers for hosts that fit a class, or a GPU given by flags, and
prints them cheapest first with their price per hour (disk included). With --class and
no --provider it asks every provider of the class and merges their offers into one list,
each with its provider. A provider that fails is named on stderr, the others' offers are
still listed, and the exit status is 1. Nothing is rented.

Offers on machines serve avoids after a failure (a host that did not boot, failed its GPU
check or gave a refused SSH endpoint) are listed apart, with the reason and until when:
serve skips them (bad_machines.avoid_for), or, for a Lambda type in a region, tries them
after the others (bad_machines.avoid_pool_for). The marks are read from database_url;
without a database a note on stderr says none is known.

  crabbox-runner offers --provider vast --class a100
  crabbox-runner offers --provider lambda --gpu H100 --count 8 --max-price 30 --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(g.Overrides, getenv)
			if err != nil {
				return err
			}
			class, err := o.resolveClass(cfg)
			if err != nil {
				return err
			}
			if err := cfg.Validate(config.Needs{}); err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), "warn", "text", cfg.VastAPIKey, cfg.LambdaAPIKey)
			for _, d := range cfg.Deprecations() {
				log.Warn("config: " + d)
			}
			providers := make([]provisioner.Provider, 0, len(class.Providers))
			for _, name := range class.Providers {
				p, err := newProvider(name, cfg, log)
				if err != nil {
					return err
				}
				providers = append(providers, p)
			}
			// Every provider of the class, cheapest first across them. One
			// that fails leaves the others' offers listed, and the exit
			// status 1.
			var all []provisioner.Offer
			var failed []error
			for i, p := range providers {
				offers, err := p.Offers(cmd.Context(), class)
				if err != nil {
					failed = append(failed, fmt.Errorf("%s: %w", class.Providers[i], err))
					continue
				}
				for _, of := range offers {
					if class.MaxPricePerHour <= 0 || of.PricePerHour <= class.MaxPricePerHour {
						all = append(all, of)
					}
				}
			}
			sort.SliceStable(all, func(i, j int) bool { return all[i].PricePerHour < all[j].PricePerHour })
			if len(failed) == len(providers) {
				return errors.Join(failed...)
			}
			// As serve would: offers on machines marked bad are left out,
			// those on bad pools put last (offers_bad.go).
			pools := map[string]bool{}
			for _, p := range providers {
				pools[p.Name()] = p.Capabilities().MachinePools
			}
			bad := readBadMachines(cmd.Context(), cfg, cmd.ErrOrStderr())
			all, avoided := provisioner.AvoidBadMachines(all, bad, func(p string) bool { return pools[p] }, time.Now())
			if o.limit > 0 && len(all) > o.limit {
				all = all[:o.limit]
			}
			if err := printOffers(cmd.OutOrStdout(), o.output, class, all, avoided); err != nil {
				return err
			}
			if len(failed) > 0 {
				return fmt.Errorf("offers incomplete: %w", errors.Join(failed...))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.providers, "provider", nil, "provider(s) to ask: vast, lambda (default: the class's providers)")
	f.StringVar(&o.class, "class", "", "a class from the config file")
	f.StringVar(&o.gpu, "gpu", "", "GPU name, e.g. A100, \"RTX 4090\", H100 (instead of --class)")
	f.IntVar(&o.count, "count", 0, "number of GPUs (default 1)")
	f.Float64Var(&o.minMemory, "min-memory", 0, "minimum memory per GPU, GB")
	f.Float64Var(&o.maxPrice, "max-price", 0, "maximum price per hour, USD")
	f.IntVar(&o.disk, "disk", 0, "disk, GB (priced into Vast offers)")
	f.StringVar(&o.region, "region", "", "region or country filter")
	f.IntVar(&o.limit, "limit", 20, "show at most this many offers (0: all)")
	f.StringVar(&o.output, "output", "table", "output format: table or json")
	return cmd
}

func (o *offersOptions) resolveClass(cfg *config.Config) (provisioner.Class, error) {
	if o.output != "table" && o.output != "json" {
		return provisioner.Class{}, fmt.Errorf("--output: %q is not table or json", o.output)
	}
	var class provisioner.Class
	switch {
	case o.class != "" && o.gpu != "":
		return class, fmt.Errorf("give --class or --gpu, not both")
	case o.class != "":
		i := slices.IndexFunc(cfg.Classes, func(c config.ClassConfig) bool { return strings.EqualFold(c.Name, o.class) })
		if i < 0 {
			return class, fmt.Errorf("--class: no class %q in %s", o.class, cmpOr(cfg.Source, "the configuration"))
		}
		class = cfg.ProvisionerClasses()[i]
	case o.gpu != "":
		class = provisioner.Class{Name: "flags", GPU: provisioner.GPURequirement{Name: o.gpu, Count: 1},
			VerifiedOnly: true, DirectSSH: true, MinReliability: 0.95, DiskGB: 40}
	default:
		return class, fmt.Errorf("give --class NAME or --gpu NAME")
	}
	if o.count > 0 {
		class.GPU.Count = o.count
	}
	if o.minMemory > 0 {
		class.GPU.MinMemoryGB = o.minMemory
	}
	if o.maxPrice > 0 {
		class.MaxPricePerHour = o.maxPrice
	}
	if o.disk > 0 {
		class.DiskGB = o.disk
	}
	if o.region != "" {
		class.Region = o.region
	}
	if len(o.providers) > 0 {
		class.Providers = o.providers
	}
	if len(class.Providers) == 0 {
		return class, fmt.Errorf("--provider: name one or more of %s", strings.Join(config.KnownProviders, ", "))
	}
	for _, p := range class.Providers {
		if !slices.Contains(config.KnownProviders, p) {
			return class, fmt.Errorf("--provider: unknown provider %q", p)
		}
	}
	return class, nil
}

type offerJSON struct {
	Provider     string  `json:"provider"`
	OfferID      string  `json:"offer_id"`
	GPU          string  `json:"gpu"`
	GPUCount     int     `json:"gpu_count"`
	GPUMemoryGB  float64 `json:"gpu_memory_gb"`
	PricePerHour float64 `json:"price_per_hour"`
	Region       string  `json:"region"`
	Reliability  float64 `json:"reliability"`
	MachineID    string  `json:"machine_id,omitempty"`
	// Image is what the host would run: Vast's container image, Lambda's
	// machine image for the offer's region and architecture.
	Image string `json:"image,omitempty"`
	// Interruptible: a bid (Vast) at BidPerHour; price_per_hour is the bid
	// plus storage.
	Interruptible bool    `json:"interruptible,omitempty"`
	BidPerHour    float64 `json:"bid_per_hour,omitempty"`
	// BadMachine, when set, is why serve skips the offer or tries it last.
	BadMachine *badMachinesJSON `json:"bad_machine,omitempty"`
}

// printOffers prints the offers in the order serve tries them, then those
// on machines marked bad: in JSON, with their mark, skipped ones at the end.
func printOffers(w io.Writer, format string, class provisioner.Class, offers []provisioner.Offer, avoided []provisioner.AvoidedOffer) error {
	if format == "json" {
		marks := map[string]*badMachinesJSON{}
		for _, a := range avoided {
			marks[a.Offer.Provider+"/"+a.Offer.ID] = &badMachinesJSON{How: a.How, Reason: a.Mark.Reason, Until: a.Mark.Until.UTC(), Marks: a.Mark.Marks}
		}
		out := make([]offerJSON, 0, len(offers))
		add := func(o provisioner.Offer) {
			out = append(out, offerJSON{Provider: o.Provider, OfferID: o.ID, GPU: o.GPU, GPUCount: o.GPUCount, GPUMemoryGB: o.GPUMemoryGB,
				PricePerHour: o.PricePerHour, Region: o.Region, Reliability: o.Reliability, MachineID: o.MachineID, Image: o.Image,
				Interruptible: o.Interruptible, BidPerHour: o.BidPerHour, BadMachine: marks[o.Provider+"/"+o.ID]})
		}
		for _, o := range offers {
			add(o)
		}
		for _, a := range avoided {
			if a.How == provisioner.AvoidSkipped {
				add(a.Offer)
			}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if len(offers) == 0 {
		fmt.Fprintf(w, "no offer fits %s right now\n", describeClass(class))
		return printAvoided(w, avoided)
	}
	fmt.Fprintf(w, "Cheapest offers for %s\n", describeClass(class))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROVIDER\tOFFER\tGPU\tMEM/GPU\t$/HOUR\tREGION\tRELIABILITY\tIMAGE")
	for _, o := range offers {
		provider := o.Provider
		if o.Interruptible {
			provider += "/bid" // interruptible: may be outbid mid-job
		}
		fmt.Fprintf(tw, "%s\t%s\t%dx %s\t%.0f GB\t%.3f\t%s\t%.3f\t%s\n", provider, o.ID, o.GPUCount, o.GPU, o.GPUMemoryGB, o.PricePerHour, o.Region, o.Reliability, cmpOr(o.Image, "-"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printAvoided(w, avoided)
}

func describeClass(c provisioner.Class) string {
	s := fmt.Sprintf("%dx %s", max(c.GPU.Count, 1), c.GPU.Name)
	if c.GPU.MinMemoryGB > 0 {
		s += fmt.Sprintf(" ≥%.0f GB", c.GPU.MinMemoryGB)
	}
	if c.MaxPricePerHour > 0 {
		s += fmt.Sprintf(" ≤$%.2f/h", c.MaxPricePerHour)
	}
	if c.DiskGB > 0 {
		s += fmt.Sprintf(", %d GB disk", c.DiskGB)
	}
	return s + " on " + strings.Join(c.Providers, ", ")
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
