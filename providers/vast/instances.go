package vast

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// CreateParams is the body of PUT /api/v0/asks/{offer_id}/ for an
// on-demand instance. Env, when set, is a JSON object: Vast reads docker
// options from its keys ("-p 8080:8080": "1"); the spec's flag-string form
// is for templates only.
type CreateParams struct {
	ClientID      string            `json:"client_id"`
	Image         string            `json:"image"`
	Disk          float64           `json:"disk"`
	Label         string            `json:"label,omitempty"`
	RunType       string            `json:"runtype,omitempty"`
	OnStart       string            `json:"onstart,omitempty"`
	Env           map[string]string `json:"env,omitempty"`
	CancelUnavail bool              `json:"cancel_unavail"`
	// Price, when set, makes the instance interruptible at this bid, USD
	// per machine-hour (bids.go); unset, it is rented on demand.
	Price *float64 `json:"price,omitempty"`
}

// Runtypes, in the space-separated token form Vast's CLI sends and its
// instances report ("direc" without t). The documented ssh_direct and
// ssh_proxy are accepted by the server too; the CLI form is what runs
// every day.
const (
	RunTypeSSHDirect = "ssh_direc ssh_proxy" // direct port 22, proxy as fallback
	RunTypeSSHProxy  = "ssh_proxy"
)

// CreateInstance rents the offer and returns the new instance's id (Vast's
// new_contract, not the offer id). It is retried only where Vast cannot
// have acted (429, failure to connect): a second create after one that
// did go through would rent a second host.
func (c *Client) CreateInstance(ctx context.Context, offerID int64, p CreateParams) (int64, error) {
	if p.ClientID == "" {
		p.ClientID = "me"
	}
	if p.Image == "" {
		return 0, errors.New("vast: create: image is required")
	}
	if len(p.Label) > 1024 {
		return 0, errors.New("vast: create: label longer than 1024 characters")
	}
	var resp struct {
		NewContract flexInt `json:"new_contract"`
	}
	path := "/api/v0/asks/" + strconv.FormatInt(offerID, 10) + "/"
	if err := c.call(ctx, callOpts{method: http.MethodPut, path: path, route: "/api/v0/asks/{id}/", timeout: c.createTimeout, body: p}, &resp); err != nil {
		return 0, err
	}
	if resp.NewContract <= 0 {
		return 0, &errAmbiguous{fmt.Errorf("vast: PUT %s: the answer has no new_contract", path)}
	}
	return int64(resp.NewContract), nil
}

// PortBinding is one docker port mapping; HostPort is a string on Vast.
type PortBinding struct {
	HostIP   string
	HostPort string
}

// Instance is Vast's view of one rented host (the fields a provisioner
// needs), with whitespace trimmed and numbers normalised.
type Instance struct {
	ID             int64
	ActualStatus   string // "" when Vast sends null (still provisioning)
	IntendedStatus string
	CurState       string
	StatusMsg      string
	Label          string
	ImageUUID      string
	ImageRunType   string
	SSHHost        string
	SSHPort        int
	PublicIPAddr   string
	// Ports is present only while running: "22/tcp" → bindings.
	Ports           map[string][]PortBinding
	DirectPortCount int
	MachineID       int64
	HostID          int64
	GPUName         string
	NumGPUs         int
	GPURAM          float64 // MB
	DphTotal        float64
	DphBase         float64
	Geolocation     string
	StartDate       time.Time
	IsBid           bool
}

func (in *Instance) UnmarshalJSON(b []byte) error {
	var w struct {
		ID             flexInt    `json:"id"`
		ActualStatus   flexString `json:"actual_status"`
		IntendedStatus flexString `json:"intended_status"`
		CurState       flexString `json:"cur_state"`
		StatusMsg      flexString `json:"status_msg"`
		Label          flexString `json:"label"`
		ImageUUID      flexString `json:"image_uuid"`
		ImageRunType   flexString `json:"image_runtype"`
		SSHHost        flexString `json:"ssh_host"`
		SSHPort        flexFloat  `json:"ssh_port"`
		PublicIPAddr   flexString `json:"public_ipaddr"`
		// Vast documents an array of ints in one schema; clients and the
		// v1 list see a docker-style map. Decoded by hand below.
		Ports           json.RawMessage `json:"ports"`
		DirectPortCount flexFloat       `json:"direct_port_count"`
		MachineID       flexInt         `json:"machine_id"`
		HostID          flexInt         `json:"host_id"`
		GPUName         flexString      `json:"gpu_name"`
		NumGPUs         flexFloat       `json:"num_gpus"`
		GPURAM          flexFloat       `json:"gpu_ram"`
		DphTotal        flexFloat       `json:"dph_total"`
		DphBase         flexFloat       `json:"dph_base"`
		Geolocation     flexString      `json:"geolocation"`
		StartDate       flexFloat       `json:"start_date"`
		IsBid           flexBool        `json:"is_bid"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*in = Instance{
		ID:              int64(w.ID),
		ActualStatus:    strings.TrimSpace(string(w.ActualStatus)),
		IntendedStatus:  strings.TrimSpace(string(w.IntendedStatus)),
		CurState:        strings.TrimSpace(string(w.CurState)),
		StatusMsg:       strings.TrimSpace(string(w.StatusMsg)),
		Label:           strings.TrimSpace(string(w.Label)),
		ImageUUID:       strings.TrimSpace(string(w.ImageUUID)),
		ImageRunType:    strings.TrimSpace(string(w.ImageRunType)),
		SSHHost:         strings.TrimSpace(string(w.SSHHost)),
		SSHPort:         int(w.SSHPort),
		PublicIPAddr:    strings.TrimSpace(string(w.PublicIPAddr)),
		Ports:           decodePorts(w.Ports),
		DirectPortCount: int(w.DirectPortCount),
		MachineID:       int64(w.MachineID),
		HostID:          int64(w.HostID),
		GPUName:         strings.TrimSpace(string(w.GPUName)),
		NumGPUs:         int(w.NumGPUs),
		GPURAM:          float64(w.GPURAM),
		DphTotal:        float64(w.DphTotal),
		DphBase:         float64(w.DphBase),
		Geolocation:     strings.TrimSpace(string(w.Geolocation)),
		IsBid:           bool(w.IsBid),
	}
	if w.StartDate > 0 {
		sec := float64(w.StartDate)
		in.StartDate = time.Unix(int64(sec), int64((sec-float64(int64(sec)))*1e9)).UTC()
	}
	return nil
}

// decodePorts reads the docker-style map; any other shape (null, the
// spec's int array) is no ports rather than a failed decode.
func decodePorts(raw json.RawMessage) map[string][]PortBinding {
	var m map[string][]struct {
		HostIP   flexString `json:"HostIp"`
		HostPort flexString `json:"HostPort"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &m) != nil || len(m) == 0 {
		return nil
	}
	out := make(map[string][]PortBinding, len(m))
	for k, bs := range m {
		for _, b := range bs {
			out[k] = append(out[k], PortBinding{HostIP: strings.TrimSpace(string(b.HostIP)), HostPort: strings.TrimSpace(string(b.HostPort))})
		}
	}
	return out
}

// HostPort returns the external port mapped to the container port ("22/tcp").
func (in *Instance) HostPort(containerPort string) (int, bool) {
	for _, b := range in.Ports[containerPort] {
		if p, err := strconv.Atoi(b.HostPort); err == nil && p > 0 && p < 65536 {
			return p, true
		}
	}
	return 0, false
}

// GetInstance returns one instance, or an error wrapping
// provisioner.ErrNotFound when Vast answers {"instances": null} or 404.
func (c *Client) GetInstance(ctx context.Context, id int64) (*Instance, error) {
	var resp struct {
		Instances json.RawMessage `json:"instances"`
	}
	path := "/api/v0/instances/" + strconv.FormatInt(id, 10) + "/"
	err := c.call(ctx, callOpts{method: http.MethodGet, path: path, route: "/api/v0/instances/{id}/", query: url.Values{"owner": {"me"}}, idempotent: true}, &resp)
	if ae, ok := IsAPIError(err); ok && ae.Status == http.StatusNotFound {
		return nil, fmt.Errorf("vast: instance %d: %w", id, provisioner.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	raw := strings.TrimSpace(string(resp.Instances))
	if raw == "" || raw == "null" || raw == "{}" || raw == "[]" {
		return nil, fmt.Errorf("vast: instance %d: %w", id, provisioner.ErrNotFound)
	}
	var inst Instance
	if strings.HasPrefix(raw, "[") {
		// Tolerate a list of one, as the v0 list answers.
		var list []Instance
		if err := json.Unmarshal([]byte(raw), &list); err != nil {
			return nil, fmt.Errorf("vast: instance %d: decoding: %w", id, err)
		}
		for i := range list {
			if list[i].ID == id {
				return &list[i], nil
			}
		}
		return nil, fmt.Errorf("vast: instance %d: %w", id, provisioner.ErrNotFound)
	}
	if err := json.Unmarshal([]byte(raw), &inst); err != nil {
		return nil, fmt.Errorf("vast: instance %d: decoding: %w", id, err)
	}
	if inst.ID == 0 {
		inst.ID = id
	}
	if inst.ID != id {
		return nil, fmt.Errorf("vast: asked for instance %d, got %d", id, inst.ID)
	}
	return &inst, nil
}

// InstancePage is one page of GET /api/v1/instances/.
type InstancePage struct {
	Instances   []Instance
	Total       int
	LabelCounts map[string]int
	NextToken   string
}

// pageSize is the v1 list's maximum.
const pageSize = 25

// ListInstancesPage reads one page of the caller's instances. Filters may
// use only stored columns (label, actual_status, id, gpu_name…); after is
// the previous page's NextToken, "" for the first.
func (c *Client) ListInstancesPage(ctx context.Context, filters Filters, after string) (*InstancePage, error) {
	if err := filters.validate(); err != nil {
		return nil, err
	}
	q := url.Values{"limit": {strconv.Itoa(pageSize)}}
	q.Set("order_by", `[{"col":"id","dir":"asc"}]`)
	if len(filters) > 0 {
		b, err := json.Marshal(filters)
		if err != nil {
			return nil, fmt.Errorf("vast: encoding filters: %w", err)
		}
		q.Set("select_filters", string(b))
	}
	if after != "" {
		q.Set("after_token", after)
	}
	var resp struct {
		Instances   []Instance         `json:"instances"`
		Total       flexFloat          `json:"total_instances"`
		LabelCounts map[string]flexInt `json:"label_counts"`
		NextToken   flexString         `json:"next_token"`
	}
	if err := c.call(ctx, callOpts{method: http.MethodGet, path: "/api/v1/instances/", route: "/api/v1/instances/", query: q, idempotent: true}, &resp); err != nil {
		return nil, err
	}
	p := &InstancePage{Instances: resp.Instances, Total: int(resp.Total), NextToken: strings.TrimSpace(string(resp.NextToken))}
	if resp.LabelCounts != nil {
		p.LabelCounts = make(map[string]int, len(resp.LabelCounts))
		for k, v := range resp.LabelCounts {
			p.LabelCounts[k] = int(v)
		}
	}
	return p, nil
}

// maxPages bounds a listing, so a server that keeps handing out tokens
// cannot keep a caller paging forever (25 × 400 = 10,000 instances).
const maxPages = 400

// ListInstances reads every page of the caller's instances that match.
func (c *Client) ListInstances(ctx context.Context, filters Filters) ([]Instance, error) {
	var all []Instance
	after := ""
	for range maxPages {
		p, err := c.ListInstancesPage(ctx, filters, after)
		if err != nil {
			return nil, err
		}
		all = append(all, p.Instances...)
		if p.NextToken == "" || p.NextToken == after || len(p.Instances) == 0 {
			return all, nil
		}
		after = p.NextToken
	}
	return nil, fmt.Errorf("vast: instance list still going after %d pages", maxPages)
}

// AttachSSHKey lets the public key (authorized_keys text, not a key id) log
// in to the instance. A key that is already attached counts as attached.
func (c *Client) AttachSSHKey(ctx context.Context, id int64, publicKey string) error {
	publicKey = strings.TrimSpace(publicKey)
	if publicKey == "" || strings.ContainsAny(publicKey, "\r\n") {
		return errors.New("vast: attach SSH key: want one authorized_keys line")
	}
	path := "/api/v0/instances/" + strconv.FormatInt(id, 10) + "/ssh/"
	err := c.call(ctx, callOpts{method: http.MethodPost, path: path, route: "/api/v0/instances/{id}/ssh/", body: map[string]string{"ssh_key": publicKey}, idempotent: true}, nil)
	if ae, ok := IsAPIError(err); ok && strings.Contains(strings.ToLower(ae.Msg), "already associated") {
		return nil
	}
	if ae, ok := IsAPIError(err); ok && ae.Status == http.StatusNotFound {
		return fmt.Errorf("vast: instance %d: %w (%w)", id, provisioner.ErrNotFound, err)
	}
	return err
}

// SetLabel replaces the instance's label (at most 1024 characters).
func (c *Client) SetLabel(ctx context.Context, id int64, label string) error {
	if len(label) > 1024 {
		return errors.New("vast: label longer than 1024 characters")
	}
	path := "/api/v0/instances/" + strconv.FormatInt(id, 10) + "/"
	err := c.call(ctx, callOpts{method: http.MethodPut, path: path, route: "/api/v0/instances/{id}/", body: map[string]string{"label": label}, idempotent: true}, nil)
	if ae, ok := IsAPIError(err); ok && ae.Status == http.StatusNotFound {
		return fmt.Errorf("vast: instance %d: %w (%w)", id, provisioner.ErrNotFound, err)
	}
	return err
}

// DestroyInstance destroys the instance and stops its billing. An instance
// that is already gone (404, not_found) counts as destroyed.
func (c *Client) DestroyInstance(ctx context.Context, id int64) error {
	path := "/api/v0/instances/" + strconv.FormatInt(id, 10) + "/"
	err := c.call(ctx, callOpts{method: http.MethodDelete, path: path, route: "/api/v0/instances/{id}/", body: map[string]any{}, idempotent: true}, nil)
	if ae, ok := IsAPIError(err); ok && (ae.Status == http.StatusNotFound || ae.has("not_found") || ae.has("no_such_instance")) {
		return nil
	}
	return err
}
