// Package lambda rents GPU hosts from Lambda Cloud for crabbox-runner: a
// client for the parts of Lambda's Cloud API it needs (instance types,
// images, SSH keys, launch, get, list, terminate), written to Lambda's
// OpenAPI 1.8.3 document, and a provisioner.Provider on top of it.
//
// Lambda runs cloud-init, so hosts get the lease's host key and client key
// through user-data and the first SSH connection is verified, not trusted.
// Lambda limits requests to about one per second and launches to one per 12
// seconds; one Client's limiters are shared by every lease of the process.
// Ownership lives in the instance's name (the provisioner's marker) and in
// its tags, because Lambda cannot filter instances by either.
//
// The package lambdatest beside it is a fake Lambda that checks every
// request and answer against the OpenAPI document.
package lambda

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// Name is the provider's name in configuration.
const Name = "lambda"

// Defaults of Options.
const (
	// DefaultSSHUser is the login user of Lambda's Ubuntu images.
	DefaultSSHUser = "ubuntu"
	// DefaultImageFamily is launched when a class names no image: Lambda's
	// GPU Base image (Ubuntu 24.04 with NVIDIA drivers), rather than the
	// heavier Lambda Stack that Lambda would pick.
	DefaultImageFamily      = "gpu-base-24-04"
	DefaultOffersCacheTTL   = 5 * time.Second
	DefaultKeyRetryInterval = 10 * time.Second
	// DefaultKeyRetryFor bounds how long the SSH key of a terminated
	// instance is retried: long past any termination Lambda takes.
	DefaultKeyRetryFor      = time.Hour
	DefaultCapacityCooldown = 2 * time.Minute
)

// Tag keys written on every instance. Lambda wants ^[a-z][a-z0-9-:]+$.
const (
	TagDeployment = "crabbox-deployment"
	TagLease      = "crabbox-lease"
	TagExpires    = "crabbox-expires"
	TagClass      = "crabbox-class"
	// TagSmoke marks a `crabbox-runner smoke` host (provisioner.Marker's
	// Smoke), so the mark survives a renamed instance as the rest does.
	TagSmoke = "crabbox-smoke"
)

// Options configure a Provider.
type Options struct {
	// APIURL, APIKey, MinRequestInterval, LaunchInterval, Retry, Timeout
	// and HTTPClient configure the Client; see ClientConfig.
	APIURL             string
	APIKey             string
	MinRequestInterval time.Duration
	LaunchInterval     time.Duration
	Retry              RetryPolicy
	Timeout            time.Duration
	HTTPClient         *http.Client

	// SSHUser is the user to log in as; DefaultSSHUser when empty.
	SSHUser string
	// SSHAddress maps an instance's IP to the address its SSH server
	// listens on; port 22 of the IP when nil. Tests point it at the fake's
	// loopback sshd.
	SSHAddress func(ip string) (host string, port int)
	// ImagesCacheTTL is how long GET /images is reused;
	// DefaultImagesCacheTTL when zero, no reuse when negative.
	ImagesCacheTTL time.Duration
	// KeyRetryInterval spaces the retries of SSH key deletions that Lambda
	// refused while the key's instance still existed;
	// DefaultKeyRetryInterval when zero. KeyRetryFor bounds them
	// (DefaultKeyRetryFor when zero).
	KeyRetryInterval time.Duration
	KeyRetryFor      time.Duration
	// OnRequest, when set, is told of every HTTP attempt; see ClientConfig.
	OnRequest func(endpoint string, status int)
	// OffersCacheTTL is how long GET /instance-types is reused;
	// DefaultOffersCacheTTL when zero, no reuse when negative.
	OffersCacheTTL time.Duration
	// CapacityCooldown is how long an offer whose launch found no capacity
	// is left out of Offers; DefaultCapacityCooldown when zero, never when
	// negative.
	CapacityCooldown time.Duration
	// StatusCacheTTL is how long one GET /instances answers Get for every
	// instance it lists: twice the request interval when zero (2 s by
	// default), none when negative.
	StatusCacheTTL time.Duration
	Logger         *slog.Logger
}

// Provider implements provisioner.Provider on Lambda Cloud.
type Provider struct {
	client *Client
	opts   Options
	log    *slog.Logger

	mu         sync.Mutex
	typesCache map[string]InstanceTypeAvailability
	typesAt    time.Time
	cooling    map[string]time.Time // offer id → end of its cooldown

	imagesGroup singleflight.Group
	imagesCache []Image
	imagesAt    time.Time
	imagesStale bool

	keys pendingKeys

	statuses statusCache
}

var _ provisioner.Provider = (*Provider)(nil)

// New checks opts and returns a Provider. It does not contact Lambda.
func New(opts Options) (*Provider, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := NewClient(ClientConfig{
		APIURL: opts.APIURL, APIKey: opts.APIKey, HTTPClient: opts.HTTPClient, Timeout: opts.Timeout,
		MinRequestInterval: opts.MinRequestInterval, LaunchInterval: opts.LaunchInterval,
		Retry: opts.Retry, Logger: log, OnRequest: opts.OnRequest,
	})
	if err != nil {
		return nil, err
	}
	opts.APIKey = "" // the client keeps it; nothing else needs it
	opts.SSHUser = cmp.Or(strings.TrimSpace(opts.SSHUser), DefaultSSHUser)
	switch {
	case opts.OffersCacheTTL == 0:
		opts.OffersCacheTTL = DefaultOffersCacheTTL
	case opts.OffersCacheTTL < 0:
		opts.OffersCacheTTL = 0
	}
	switch {
	case opts.ImagesCacheTTL == 0:
		opts.ImagesCacheTTL = DefaultImagesCacheTTL
	case opts.ImagesCacheTTL < 0:
		opts.ImagesCacheTTL = 0
	}
	opts.KeyRetryInterval = cmp.Or(max(opts.KeyRetryInterval, 0), DefaultKeyRetryInterval)
	opts.KeyRetryFor = cmp.Or(max(opts.KeyRetryFor, 0), DefaultKeyRetryFor)
	switch {
	case opts.CapacityCooldown == 0:
		opts.CapacityCooldown = DefaultCapacityCooldown
	case opts.CapacityCooldown < 0:
		opts.CapacityCooldown = 0
	}
	switch {
	case opts.StatusCacheTTL == 0:
		opts.StatusCacheTTL = 2 * interval(opts.MinRequestInterval, DefaultMinRequestInterval)
	case opts.StatusCacheTTL < 0:
		opts.StatusCacheTTL = 0
	}
	return &Provider{client: c, opts: opts, log: log, cooling: map[string]time.Time{}}, nil
}

// Client is the provider's API client, with the limiters it shares.
func (p *Provider) Client() *Client { return p.client }

// Name implements provisioner.Provider.
func (p *Provider) Name() string { return Name }

// Capabilities implements provisioner.Provider: Lambda runs cloud-init, so
// the host key crabbox-runner generates is installed before sshd starts.
func (p *Provider) Capabilities() provisioner.Capabilities {
	return provisioner.Capabilities{CloudInit: true, HostKeyInjection: true, MachinePools: true}
}

// Create registers the lease's client key and launches the offer's type in
// the offer's region with the offer's image (by its id there), named with
// the marker and tagged with it. No capacity, or a file system or image the
// region lacks, is ErrOfferUnavailable (see launchRefused for what Offers
// does next). When the launch fails the key is deleted again, so a lease
// that moves on leaves nothing behind. A launch whose answer was lost and
// whose instance is not found is ErrCreateUncertain.
func (p *Provider) Create(ctx context.Context, req provisioner.CreateRequest) (*provisioner.Instance, error) {
	typeName, region, err := parseOfferID(req.Offer.ID)
	if err != nil {
		return nil, err
	}
	lr, err := launchRequest(req, typeName, region)
	if err != nil {
		return nil, err
	}
	if lr.Image, err = p.launchImage(ctx, req.Offer.Image, req.Class.LambdaImage, region, typeName); err != nil {
		return nil, err
	}
	keyName := sshKeyName(req.Marker)
	key, err := p.ensureKey(ctx, keyName, req.SSHPublicKey)
	if err != nil {
		return nil, fmt.Errorf("lambda: registering the lease's SSH key: %w", err)
	}
	lr.SSHKeyNames = []string{key.Name}
	// An earlier attempt of this lease may have left the key pending
	// deletion (an uncertain launch); this launch needs it.
	p.keys.forget(keyName)
	id, err := p.client.Launch(ctx, lr)
	uncertain := false
	if err != nil && launchMayHaveHappened(err) {
		if found := p.findLaunched(ctx, lr.Name); found != "" {
			p.log.Warn("lambda: the launch answered an error but the instance exists", "instance_id", found, "lease_id", req.Marker.LeaseID, "error", err.Error())
			id, err = found, nil
		} else {
			uncertain = true
		}
	}
	if err != nil {
		if uncertain {
			// The instance may yet show up under the lease's marker: the
			// provisioner looks again and destroys it, and Destroy of
			// the marker deletes the key then (Lambda refuses to delete a
			// key a live instance uses).
			p.keys.add(p, []string{keyName})
			return nil, fmt.Errorf("lambda: %s: %w: %w", req.Offer.ID, provisioner.ErrCreateUncertain, err)
		}
		p.deleteKey(ctx, key.ID)
		if unavailable(err) {
			p.launchRefused(ctx, req.Offer, region, typeName, err)
			return nil, fmt.Errorf("lambda: %s: %w: %w", req.Offer.ID, provisioner.ErrOfferUnavailable, err)
		}
		return nil, err
	}
	p.log.Info("lambda: instance launched", "instance_id", id, "offer_id", req.Offer.ID, "lease_id", req.Marker.LeaseID)
	return &provisioner.Instance{
		Provider:     Name,
		ID:           id,
		Status:       provisioner.InstancePending,
		Marker:       req.Marker,
		PricePerHour: req.Offer.PricePerHour,
		GPU:          req.Offer.GPU,
		Region:       region,
		CreatedAt:    time.Now().UTC(),
	}, nil
}

// launchMayHaveHappened: a server error or a lost answer says nothing of
// whether Lambda launched the instance; a 4xx says it did not.
func launchMayHaveHappened(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status >= 500 || strings.HasPrefix(ae.Code, codeProviderPrefix)
	}
	var ne *networkError
	return errors.As(err, &ne)
}

// findLaunched looks for a live instance named with the lease's marker,
// which only this lease's launch can have made.
func (p *Provider) findLaunched(ctx context.Context, name string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	all, err := p.client.Instances(ctx)
	if err != nil {
		p.log.Warn("lambda: looking for the instance of a failed launch", "error", err.Error())
		return ""
	}
	for _, li := range all {
		if li.Name == name && li.Status != StatusTerminated && li.Status != StatusTerminating {
			return li.ID
		}
	}
	return ""
}

// unavailable: the launch failed for a reason another offer may not have.
// Images and file systems are per region, so a missing one is the region's
// problem, as is capacity.
func unavailable(err error) bool {
	return IsCode(err, CodeInsufficientCapacity) || IsCode(err, CodeFileSystemWrongRegion) || IsCode(err, CodeNotFound)
}

// launchRefused handles a launch refused for the offer's sake. No capacity
// (or a file system in another region) cools the offer down. A 404 is most
// likely the image, which Lambda lists per region and changes now and
// then: the image list is asked again at once, and the offer cools down
// only when its image is still listed there (then the 404 was something
// else, a file system or the key); otherwise the next Offers leaves the
// region out by itself, without a cooldown that would also hide it once
// the image is back.
func (p *Provider) launchRefused(ctx context.Context, offer provisioner.Offer, region, typeName string, err error) {
	if !IsCode(err, CodeNotFound) {
		p.coolDown(offer.ID)
		return
	}
	p.refreshImages()
	family, arch, ok := strings.Cut(offer.Image, "@")
	images, ierr := p.images(ctx)
	if !ok || ierr != nil {
		p.coolDown(offer.ID)
		return
	}
	if _, listed := pickImage(images, region, arch, ImageChoice{Family: family}); listed {
		p.coolDown(offer.ID)
		return
	}
	p.log.Warn("lambda: the offer's image is no longer in its region; the offer is left out while it is missing",
		"offer_id", offer.ID, "image", offer.Image, "instance_type", typeName)
}

// launchRequest builds the launch body from the request; Image and
// SSHKeyNames are filled in by Create.
func launchRequest(req provisioner.CreateRequest, typeName, region string) (LaunchRequest, error) {
	if req.Marker.IsZero() {
		return LaunchRequest{}, errors.New("lambda: refusing to create an instance without an ownership marker")
	}
	if req.SSHPublicKey == "" {
		return LaunchRequest{}, errors.New("lambda: create needs the lease's SSH public key")
	}
	name := req.Marker.String()
	if len(name) > 64 {
		return LaunchRequest{}, fmt.Errorf("lambda: marker %q is longer than Lambda's 64-character instance name; use a shorter deployment", name)
	}
	if len(req.UserData) > MaxUserDataBytes {
		return LaunchRequest{}, fmt.Errorf("lambda: user-data is %d bytes, Lambda accepts at most %d", len(req.UserData), MaxUserDataBytes)
	}
	tags, err := markerTags(req.Marker, req.Class.Name)
	if err != nil {
		return LaunchRequest{}, err
	}
	lr := LaunchRequest{
		RegionName:       region,
		InstanceTypeName: typeName,
		Name:             name,
		Hostname:         hostname(req.Marker.LeaseID),
		UserData:         req.UserData,
		Tags:             tags,
		FileSystemNames:  req.Class.FileSystems,
	}
	for _, id := range req.Class.FirewallRulesets {
		lr.FirewallRulesets = append(lr.FirewallRulesets, FirewallRulesetEntry{ID: id})
	}
	return lr, nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// hostnameRE is Lambda's hostname pattern.
var hostnameRE = regexp.MustCompile(`^[a-z0-9][0-9a-z-]{0,62}$`)

// hostname is "crabbox-<lease id>", lower-cased, with anything outside
// Lambda's pattern replaced by '-', at most 63 characters.
func hostname(leaseID string) string {
	h := "crabbox-" + strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '-'
	}, leaseID)
	if len(h) > 63 {
		h = h[:63]
	}
	return strings.TrimRight(h, "-")
}

var tagKeyRE = regexp.MustCompile(`^[a-z][a-z0-9-:]+$`)

// markerTags are the tags that let gc find the lease without a database, in
// case the instance's name is changed in Lambda's console.
func markerTags(m provisioner.Marker, class string) ([]Tag, error) {
	tags := []Tag{
		{TagDeployment, m.Deployment},
		{TagLease, m.LeaseID},
		{TagExpires, m.Expires.UTC().Format(time.RFC3339)},
	}
	if class != "" {
		tags = append(tags, Tag{TagClass, class})
	}
	if m.Smoke {
		tags = append(tags, Tag{TagSmoke, "true"})
	}
	for _, t := range tags {
		if !tagKeyRE.MatchString(t.Key) || len(t.Key) > 55 || len(t.Value) > 128 {
			return nil, fmt.Errorf("lambda: tag %s=%q does not fit Lambda's limits", t.Key, t.Value)
		}
	}
	return tags, nil
}

// markerFromTags rebuilds a marker from the tags markerTags wrote.
func markerFromTags(tags []Tag) (provisioner.Marker, bool) {
	var m provisioner.Marker
	var exp string
	for _, t := range tags {
		switch t.Key {
		case TagDeployment:
			m.Deployment = t.Value
		case TagLease:
			m.LeaseID = t.Value
		case TagExpires:
			exp = t.Value
		case TagSmoke:
			m.Smoke = t.Value == "true"
		}
	}
	e, err := time.Parse(time.RFC3339, exp)
	if m.Deployment == "" || m.LeaseID == "" || err != nil {
		return provisioner.Marker{}, false
	}
	m.Expires = e.UTC()
	return m, true
}

// markerOf reads an instance's ownership: from its name, else from its
// tags. When both are there and disagree the instance counts as nobody's,
// so nothing acts on it.
func markerOf(li *Instance) (provisioner.Marker, bool) {
	byName, okName := provisioner.ParseMarker(li.Name)
	byTags, okTags := markerFromTags(li.Tags)
	switch {
	case okName && okTags:
		if byName.Deployment != byTags.Deployment || byName.LeaseID != byTags.LeaseID {
			return provisioner.Marker{}, false
		}
		byName.Smoke = byName.Smoke || byTags.Smoke
		return byName, true
	case okName:
		return byName, true
	case okTags:
		return byTags, true
	}
	return provisioner.Marker{}, false
}

// sshKeyName is the lease's key name in Lambda: crabbox-<deployment>-<lease>,
// or with a hash of the lease id when that would pass 64 characters.
func sshKeyName(m provisioner.Marker) string {
	name := keyPrefix(m.Deployment) + m.LeaseID
	if len(name) <= 64 {
		return name
	}
	sum := sha256.Sum256([]byte(m.LeaseID))
	return keyPrefix(m.Deployment) + hex.EncodeToString(sum[:])[:16]
}

func keyPrefix(deployment string) string { return "crabbox-" + deployment + "-" }

// CountRequests has every HTTP attempt of the provider's client reported
// to f (see ClientConfig.OnRequest).
func (p *Provider) CountRequests(f func(endpoint string, status int)) { p.client.CountRequests(f) }
