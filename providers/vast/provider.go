package vast

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// Name is the provider's name in configuration.
const Name = "vast"

// DefaultSSHUser is the only user Vast containers have.
const DefaultSSHUser = "root"

// maxOnStart is the onstart length Vast's spec promises (4048; its CLI
// docs say 16 KB). Longer scripts are sent gzipped and base64-encoded.
const maxOnStart = 4000

// Provider rents Vast.ai instances. It is safe for concurrent use.
type Provider struct {
	client     *Client
	log        *slog.Logger
	sshUser    string
	offerLimit int

	createLookup time.Duration
	statuses     statusCache
	searches     searchCache

	mu sync.Mutex
	// keys holds the lease key of each instance created here until it has
	// been attached to the running instance: the key is attached right
	// after create, and again once the instance runs, because Vast does not
	// say whether a key attached while the container is still loading
	// survives its start (and may refuse it then; see Create).
	keys map[int64]string
	// created is when each instance was created here: a listing asked for
	// before that cannot know it.
	created map[int64]time.Time
}

// DefaultCreateLookup is how long a create whose answer was lost is looked
// for by its label. Vast's listing can lag a create by some seconds; the
// window covers several listings (1 s apart at Vast's limit).
const DefaultCreateLookup = 20 * time.Second

var _ provisioner.Provider = (*Provider)(nil)

// New returns a Provider with its own Client. It does not contact Vast.
func New(cfg Config) (*Provider, error) {
	c, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	limit := cfg.OfferLimit
	if limit <= 0 {
		limit = DefaultOfferLimit
	}
	statusTTL := cfg.StatusTTL
	if statusTTL == 0 {
		statusTTL = DefaultStatusTTL
	}
	searchTTL := cfg.SearchTTL
	if searchTTL == 0 {
		searchTTL = DefaultSearchTTL
	}
	lookup := cfg.CreateLookup
	if lookup <= 0 {
		lookup = DefaultCreateLookup
	}
	return &Provider{
		client:       c,
		log:          c.log,
		sshUser:      strings.TrimSpace(cfg.SSHUser),
		offerLimit:   limit,
		createLookup: lookup,
		statuses:     statusCache{ttl: statusTTL},
		searches:     searchCache{ttl: searchTTL},
		keys:         map[int64]string{},
		created:      map[int64]time.Time{},
	}, nil
}

// Client is the provider's API client (and rate limiter).
func (p *Provider) Client() *Client { return p.client }

// CountRequests has every HTTP attempt of the provider's client reported
// to f (endpoint as method and route template, status 0 when no answer
// came): serve counts them in crabbox_provider_requests_total.
func (p *Provider) CountRequests(f func(endpoint string, status int)) { p.client.CountRequests(f) }

// Name implements provisioner.Provider.
func (p *Provider) Name() string { return Name }

// Capabilities: Vast runs containers with no cloud-init, and its hosts
// generate their own SSH host keys, so the first key seen is pinned.
func (p *Provider) Capabilities() provisioner.Capabilities {
	return provisioner.Capabilities{CloudInit: false, HostKeyInjection: false}
}

// Create rents the offer for the lease: label = the marker, onstart = the
// bootstrap's start script, then attaches the lease's SSH key. An offer
// that is gone (404/410 no_such_ask) is provisioner.ErrOfferUnavailable.
func (p *Provider) Create(ctx context.Context, req provisioner.CreateRequest) (*provisioner.Instance, error) {
	offerID, err := strconv.ParseInt(req.Offer.ID, 10, 64)
	if err != nil || offerID <= 0 {
		return nil, fmt.Errorf("vast: offer id %q is not a Vast offer: %w", req.Offer.ID, provisioner.ErrOfferUnavailable)
	}
	key := strings.TrimSpace(req.SSHPublicKey)
	if key == "" {
		return nil, errors.New("vast: create needs the lease's SSH public key")
	}
	if req.Marker.IsZero() {
		return nil, errors.New("vast: create needs an ownership marker")
	}
	onstart, err := onStartScript(req.OnStart)
	if err != nil {
		return nil, err
	}
	label := req.Marker.String()
	params := CreateParams{
		ClientID:      "me",
		Image:         image(req.Class),
		Disk:          diskGB(req.Class),
		Label:         label,
		RunType:       RunTypeSSHProxy,
		OnStart:       onstart,
		CancelUnavail: true,
	}
	if req.Class.DirectSSH {
		params.RunType = RunTypeSSHDirect
	}
	if req.Offer.Interruptible {
		if req.Offer.BidPerHour <= 0 {
			return nil, fmt.Errorf("vast: offer %d: an interruptible offer without a bid", offerID)
		}
		bid := req.Offer.BidPerHour
		params.Price = &bid
	}

	id, err := p.client.CreateInstance(ctx, offerID, params)
	var amb *errAmbiguous
	switch {
	case err == nil:
	case offerGone(err):
		p.searches.taken(offerID)
		return nil, fmt.Errorf("vast: offer %d: %w (%w)", offerID, provisioner.ErrOfferUnavailable, err)
	case params.Price != nil && bidRefused(err):
		// The minimum bid rose since the search: no host, and the machine
		// may still be rented on demand (the next offer, when it fits).
		return nil, fmt.Errorf("vast: bid $%.4f/h on offer %d refused (the minimum bid rose since the search): %w", *params.Price, offerID, err)
	case errors.As(err, &amb):
		// The create may have gone through (its answer was lost or came
		// too late): resolve it before anything else is tried, or one
		// lease rents two hosts. An instance carrying this lease's label
		// is ours: adopt it.
		found, ferr := p.resolveCreate(ctx, label)
		if found == 0 {
			p.searches.taken(offerID) // it may well be rented now
			return nil, fmt.Errorf("vast: create on offer %d for lease %s: %w: %w (no instance with its label found: %v)",
				offerID, req.Marker.LeaseID, provisioner.ErrCreateUncertain, err, ferr)
		}
		p.log.Warn("vast: create answered with an error but the instance exists; adopting it", "instance_id", found, "offer_id", offerID, "error", err)
		id = found
	default:
		return nil, err
	}
	p.searches.taken(offerID)
	p.log.Info("vast: instance created", "instance_id", id, "offer_id", offerID, "machine_id", req.Offer.MachineID, "lease_id", req.Marker.LeaseID)

	p.mu.Lock()
	p.keys[id] = key
	p.created[id] = time.Now()
	p.mu.Unlock()
	if err := p.client.AttachSSHKey(ctx, id, key); err != nil {
		if errors.Is(err, provisioner.ErrNotFound) {
			p.forget(id)
			return nil, fmt.Errorf("vast: instance %d vanished right after its create: %w", id, err)
		}
		// Vast may refuse a key before the container runs; the key stays
		// pending and Get attaches it once the instance runs. The host is
		// kept: destroying it for this would throw away a good rental.
		p.log.Debug("vast: SSH key not attached yet; will attach once the instance runs", "instance_id", id, "error", err)
	}
	return &provisioner.Instance{
		Provider:     Name,
		ID:           strconv.FormatInt(id, 10),
		Status:       provisioner.InstancePending,
		Marker:       req.Marker,
		PricePerHour: req.Offer.PricePerHour,
		GPU:          req.Offer.GPU,
		Region:       req.Offer.Region,
		MachineID:    req.Offer.MachineID,
		CreatedAt:    time.Now().UTC(),
	}, nil
}

// offerGone reports Vast's "that offer is taken" answers to create.
func offerGone(err error) bool {
	ae, ok := IsAPIError(err)
	if !ok {
		return false
	}
	return ae.Status == http.StatusNotFound || ae.Status == http.StatusGone || ae.has("no_such_ask")
}

// bidRefused reports Vast's answer to a bid it will not take: 400
// invalid_price (vast-openapi.yaml createInstance, 400 error enum).
func bidRefused(err error) bool {
	ae, ok := IsAPIError(err)
	return ok && ae.Status == http.StatusBadRequest && ae.has("invalid_price")
}

// resolveCreate looks for the instance a create with an unknown outcome
// made, by its label, a few times over p.createLookup since the listing
// may lag the create. It returns 0 when none was found; err is the last
// lookup error, if any.
func (p *Provider) resolveCreate(ctx context.Context, label string) (int64, error) {
	// The lease may be shutting down; the lookup still has to finish, or
	// a host may be left rented and unknown.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.createLookup+time.Minute)
	defer cancel()
	const tries = 4
	gap := p.createLookup / (tries - 1)
	var last error
	for i := range tries {
		if i > 0 {
			t := time.NewTimer(gap)
			select {
			case <-ctx.Done():
				t.Stop()
				return 0, errors.Join(last, ctx.Err())
			case <-t.C:
			}
		}
		found, err := p.findByLabel(ctx, label)
		if err != nil {
			last = err
			continue
		}
		if found != 0 {
			return found, nil
		}
	}
	return 0, last
}

// findByLabel looks for an instance with exactly this label (0 if none).
func (p *Provider) findByLabel(ctx context.Context, label string) (int64, error) {
	list, err := p.client.ListInstances(ctx, Filters{}.Set("label", OpEq, label))
	if err != nil {
		return 0, err
	}
	for _, in := range list {
		if in.Label == label {
			return in.ID, nil
		}
	}
	return 0, nil
}

// onStartScript passes a script through, or wraps one too long for Vast's
// onstart field in a gzip+base64 envelope that unpacks and runs it.
func onStartScript(s string) (string, error) {
	if len(s) <= maxOnStart {
		return s, nil
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write([]byte(s)); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	wrapped := "echo '" + base64.StdEncoding.EncodeToString(buf.Bytes()) + "' | base64 -d | gunzip | bash"
	if len(wrapped) > maxOnStart {
		return "", fmt.Errorf("vast: the onstart script is %d bytes, too long for Vast even compressed", len(s))
	}
	return wrapped, nil
}

// parseID reads a Vast instance id; ok is false for anything Vast cannot
// have issued.
func parseID(id string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(id), 10, 64)
	return n, err == nil && n > 0
}

// Get returns the instance's state, from one listing of the account's
// instances shared by every booting host (statuses.go); an instance the
// listing lacks is asked for by id before it is called gone. Once Vast
// reports it running with SSH details, the lease key is attached (see
// Provider.keys); until that succeeds the instance is reported pending.
func (p *Provider) Get(ctx context.Context, id string) (*provisioner.Instance, error) {
	n, ok := parseID(id)
	if !ok {
		return nil, fmt.Errorf("vast: instance %q: %w", id, provisioner.ErrNotFound)
	}
	p.mu.Lock()
	created := p.created[n]
	p.mu.Unlock()
	in, ok, err := p.statuses.lookup(ctx, p, n, created)
	if err != nil {
		p.log.Debug("vast: listing instances failed; asking for the one", "instance_id", n, "error", err)
	}
	if !ok {
		in, err = p.client.GetInstance(ctx, n)
		if err != nil {
			if errors.Is(err, provisioner.ErrNotFound) {
				p.forget(n)
			}
			return nil, err
		}
	}
	out := p.convert(in)
	if out.Status == provisioner.InstanceRunning {
		p.mu.Lock()
		key, pending := p.keys[n]
		p.mu.Unlock()
		if pending {
			if err := p.client.AttachSSHKey(ctx, n, key); err != nil {
				p.log.Warn("vast: attaching the SSH key to the running instance failed; will try again", "instance_id", n, "error", err)
				out.Status = provisioner.InstancePending
				out.StatusMessage = describe("running, attaching the SSH key", out.StatusMessage)
			} else {
				p.mu.Lock()
				delete(p.keys, n)
				p.mu.Unlock()
			}
		}
	}
	return out, nil
}

func (p *Provider) forget(id int64) {
	p.mu.Lock()
	delete(p.keys, id)
	delete(p.created, id)
	p.mu.Unlock()
	p.statuses.drop(id)
}

// ListOwned lists the instances whose label is this deployment's marker.
//
// Vast's list filters labels only by equality, so a marker prefix cannot be
// asked for. One page (25) usually holds an account's instances; when there
// are more, the first page's label_counts tell which labels exist, and only
// those that are this deployment's markers are fetched, by label. Every
// instance is checked again here with provisioner.ParseMarker.
func (p *Provider) ListOwned(ctx context.Context, deployment string) ([]*provisioner.Instance, error) {
	if deployment == "" {
		return nil, nil
	}
	first, err := p.client.ListInstancesPage(ctx, nil, "")
	if err != nil {
		return nil, err
	}
	list := first.Instances
	switch {
	case first.NextToken == "":
	case first.LabelCounts != nil:
		var ours []string
		for label := range first.LabelCounts {
			if m, ok := provisioner.ParseMarker(label); ok && m.Deployment == deployment {
				ours = append(ours, label)
			}
		}
		list = nil
		for i := 0; i < len(ours); i += 50 {
			chunk := ours[i:min(i+50, len(ours))]
			got, err := p.client.ListInstances(ctx, Filters{}.Set("label", OpIn, chunk))
			if err != nil {
				return nil, err
			}
			list = append(list, got...)
		}
	default:
		rest, err := p.listFrom(ctx, first.NextToken)
		if err != nil {
			return nil, err
		}
		list = append(list, rest...)
	}
	var out []*provisioner.Instance
	seen := map[int64]bool{}
	for i := range list {
		in := &list[i]
		m, ok := provisioner.ParseMarker(in.Label)
		if !ok || m.Deployment != deployment || seen[in.ID] {
			continue
		}
		seen[in.ID] = true
		out = append(out, p.convert(in))
	}
	return out, nil
}

func (p *Provider) listFrom(ctx context.Context, after string) ([]Instance, error) {
	var all []Instance
	for range maxPages {
		pg, err := p.client.ListInstancesPage(ctx, nil, after)
		if err != nil {
			return nil, err
		}
		all = append(all, pg.Instances...)
		if pg.NextToken == "" || pg.NextToken == after || len(pg.Instances) == 0 {
			return all, nil
		}
		after = pg.NextToken
	}
	return nil, fmt.Errorf("vast: instance list still going after %d pages", maxPages)
}

// Destroy destroys the instance; one already gone counts as destroyed.
// Nothing else was created for it: the SSH key was attached to the
// instance only, not registered on the account.
func (p *Provider) Destroy(ctx context.Context, inst *provisioner.Instance) error {
	if inst == nil {
		return nil
	}
	n, ok := parseID(inst.ID)
	if !ok {
		p.log.Debug("vast: destroy of an id Vast cannot have issued; nothing to do", "instance_id", inst.ID)
		return nil
	}
	if err := p.client.DestroyInstance(ctx, n); err != nil {
		return err
	}
	p.forget(n)
	p.log.Info("vast: instance destroyed", "instance_id", n, "lease_id", inst.Marker.LeaseID)
	return nil
}
