package main

// What `offers` shows of the machines serve avoids (provisioner/badmachines.go):
// the marks are read from the database serve uses, so the list is the one
// serve's next lease would try.

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store"
)

// badMachinesJSON is an offer's mark in `offers --output json`: the offer is
// skipped by serve ("skipped"), or tried after the others ("tried_last").
type badMachinesJSON struct {
	How    string    `json:"how"`
	Reason string    `json:"reason"`
	Until  time.Time `json:"until"`
	Marks  int       `json:"marks"`
}

// readBadMachines reads the marks from database_url. Without a database (or
// when it cannot be read) nothing is skipped, and a note on w says so.
func readBadMachines(ctx context.Context, cfg *config.Config, w io.Writer) provisioner.BadMachineSet {
	if !databaseExists(cfg.DatabaseURL) {
		fmt.Fprintf(w, "note: no database at %s (database_url): machines serve avoids after a failure are not known here, and none is skipped\n", cfg.DatabaseURL)
		return nil
	}
	// A database that does not answer must not hold up the listing.
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		fmt.Fprintf(w, "note: machines serve avoids after a failure are not known here, and none is skipped: %v\n", err)
		return nil
	}
	defer st.Close()
	marks, err := st.BadMachines(ctx, time.Now())
	if err != nil {
		fmt.Fprintf(w, "note: machines serve avoids after a failure are not known here, and none is skipped: %v\n", err)
		return nil
	}
	return provisioner.NewBadMachineSet(marks)
}

// printAvoided lists the offers on machines marked bad, after the table.
func printAvoided(w io.Writer, avoided []provisioner.AvoidedOffer) error {
	if len(avoided) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nOffers on machines avoided after a failure (bad_machines.avoid_for; Lambda pools tried last, avoid_pool_for)\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROVIDER\tOFFER\tMACHINE\t$/HOUR\tAVOIDED\tUNTIL\tMARKS\tREASON")
	for _, a := range avoided {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\t%s\t%s\t%d\t%s\n", a.Offer.Provider, a.Offer.ID, a.Offer.MachineID, a.Offer.PricePerHour,
			a.How, a.Mark.Until.UTC().Format(time.RFC3339), a.Mark.Marks, a.Mark.Reason)
	}
	return tw.Flush()
}
