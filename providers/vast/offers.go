package vast

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Operators of Vast's query language (offer search and the v1 instance list).
const (
	OpEq    = "eq"
	OpNeq   = "neq"
	OpGt    = "gt"
	OpGte   = "gte"
	OpLt    = "lt"
	OpLte   = "lte"
	OpIn    = "in"
	OpNotIn = "notin"
)

var validOps = map[string]bool{OpEq: true, OpNeq: true, OpGt: true, OpGte: true, OpLt: true, OpLte: true, OpIn: true, OpNotIn: true}

// Cond is the operator object of one field, e.g. {"gte": 1, "lte": 4}.
type Cond map[string]any

// Filters maps field names to conditions.
type Filters map[string]Cond

// Set adds op:value to the field's condition.
func (f Filters) Set(field, op string, value any) Filters {
	if f[field] == nil {
		f[field] = Cond{}
	}
	f[field][op] = value
	return f
}

func (f Filters) validate() error {
	for field, cond := range f {
		if field == "" || len(cond) == 0 {
			return fmt.Errorf("vast: empty filter on %q", field)
		}
		for op, v := range cond {
			if !validOps[op] {
				return fmt.Errorf("vast: filter %s: unknown operator %q", field, op)
			}
			if op == OpIn || op == OpNotIn {
				if _, ok := v.([]string); !ok {
					if _, ok := v.([]any); !ok {
						return fmt.Errorf("vast: filter %s: %s needs a list", field, op)
					}
				}
			}
		}
	}
	return nil
}

// SearchQuery is the body of POST /api/v0/bundles/: filters plus the
// special keys, all at the top level of one JSON object.
type SearchQuery struct {
	Filters Filters
	// Order is [field, "asc"|"desc"] pairs.
	Order [][2]string
	// Type is "on-demand" (as the CLI sends it), "bid" or "reserved".
	Type  string
	Limit int
	// AllocatedStorage is the disk (GB) the offers are priced with:
	// dph_total includes it.
	AllocatedStorage float64
}

// MarshalJSON flattens the query into Vast's single object.
func (q SearchQuery) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(q.Filters)+4)
	for k, v := range q.Filters {
		m[k] = v
	}
	if len(q.Order) > 0 {
		order := make([][]string, len(q.Order))
		for i, o := range q.Order {
			order[i] = []string{o[0], o[1]}
		}
		m["order"] = order
	}
	if q.Type != "" {
		m["type"] = q.Type
	}
	if q.Limit > 0 {
		m["limit"] = q.Limit
	}
	if q.AllocatedStorage > 0 {
		m["allocated_storage"] = q.AllocatedStorage
	}
	return json.Marshal(m)
}

// Offer is one rentable machine from a search, with Vast's units: memory in
// MB, prices in $/hour except StorageCost ($/GB/month).
type Offer struct {
	ID           int64
	MachineID    int64
	HostID       int64
	GPUName      string // "RTX 4090", with spaces
	NumGPUs      int
	GPURAM       float64 // MB per GPU
	GPUTotalRAM  float64 // MB
	CPUCores     float64
	CPURAM       float64 // MB
	DiskSpace    float64 // GB available
	DphBase      float64 // compute, $/h
	DphTotal     float64 // compute + storage at the search's allocated_storage, $/h
	StorageCost  float64 // $/GB/month
	InetUpCost   float64 // $/GB
	InetDownCost float64 // $/GB
	MinBid       float64
	Reliability  float64 // 0..1
	Verification string  // "verified", "unverified", "deverified"
	Verified     bool
	// NotDatacenter is set when the answer says datacenter: false. The
	// field's presence in search results is not documented (the spec lists
	// datacenter only as a filter, "Show only datacenter offers"), so an
	// answer without it is trusted to the server-side filter.
	NotDatacenter   bool
	Rentable        bool
	Rented          bool
	Geolocation     string // free text, "Texas, US"
	DirectPortCount int
	CUDAMaxGood     float64
	// DriverVersion is the machine's NVIDIA driver, "535.86.05" (Vast's
	// search takes it as the integer 535086005: vast-api.md §3.1); empty
	// when the answer lacks it.
	DriverVersion string
	PublicIPAddr  string
}

func (o *Offer) UnmarshalJSON(b []byte) error {
	var w struct {
		ID              flexInt    `json:"id"`
		MachineID       flexInt    `json:"machine_id"`
		HostID          flexInt    `json:"host_id"`
		GPUName         flexString `json:"gpu_name"`
		NumGPUs         flexFloat  `json:"num_gpus"`
		GPURAM          flexFloat  `json:"gpu_ram"`
		GPUTotalRAM     flexFloat  `json:"gpu_total_ram"`
		CPUCores        flexFloat  `json:"cpu_cores"`
		CPURAM          flexFloat  `json:"cpu_ram"`
		DiskSpace       flexFloat  `json:"disk_space"`
		DphBase         flexFloat  `json:"dph_base"`
		DphTotal        flexFloat  `json:"dph_total"`
		StorageCost     flexFloat  `json:"storage_cost"`
		InetUpCost      flexFloat  `json:"inet_up_cost"`
		InetDownCost    flexFloat  `json:"inet_down_cost"`
		MinBid          flexFloat  `json:"min_bid"`
		Reliability     *flexFloat `json:"reliability"`
		Reliability2    *flexFloat `json:"reliability2"`
		Verification    flexString `json:"verification"`
		Verified        *flexBool  `json:"verified"`
		Datacenter      *flexBool  `json:"datacenter"`
		Rentable        *flexBool  `json:"rentable"`
		Rented          flexBool   `json:"rented"`
		Geolocation     flexString `json:"geolocation"`
		DirectPortCount flexFloat  `json:"direct_port_count"`
		CUDAMaxGood     flexFloat  `json:"cuda_max_good"`
		DriverVersion   flexString `json:"driver_version"`
		PublicIPAddr    flexString `json:"public_ipaddr"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*o = Offer{
		ID: int64(w.ID), MachineID: int64(w.MachineID), HostID: int64(w.HostID),
		GPUName: strings.TrimSpace(string(w.GPUName)), NumGPUs: int(w.NumGPUs),
		GPURAM: float64(w.GPURAM), GPUTotalRAM: float64(w.GPUTotalRAM),
		CPUCores: float64(w.CPUCores), CPURAM: float64(w.CPURAM), DiskSpace: float64(w.DiskSpace),
		DphBase: float64(w.DphBase), DphTotal: float64(w.DphTotal), StorageCost: float64(w.StorageCost),
		InetUpCost: float64(w.InetUpCost), InetDownCost: float64(w.InetDownCost), MinBid: float64(w.MinBid),
		Reliability:     -1,
		Verification:    strings.TrimSpace(string(w.Verification)),
		Rentable:        true,
		Rented:          bool(w.Rented),
		Geolocation:     strings.TrimSpace(string(w.Geolocation)),
		DirectPortCount: int(w.DirectPortCount), CUDAMaxGood: float64(w.CUDAMaxGood),
		PublicIPAddr:  strings.TrimSpace(string(w.PublicIPAddr)),
		DriverVersion: driverVersion(strings.TrimSpace(string(w.DriverVersion))),
	}
	// Absent reliability is "unknown" (-1), not 0: the provider decides.
	switch {
	case w.Reliability != nil:
		o.Reliability = float64(*w.Reliability)
	case w.Reliability2 != nil:
		o.Reliability = float64(*w.Reliability2)
	}
	if w.Rentable != nil {
		o.Rentable = bool(*w.Rentable)
	}
	o.NotDatacenter = w.Datacenter != nil && !bool(*w.Datacenter)
	switch {
	case w.Verified != nil:
		o.Verified = bool(*w.Verified)
	default:
		o.Verified = o.Verification == "verified"
	}
	return nil
}

// SearchOffers runs one offer search. The answer's order is kept.
func (c *Client) SearchOffers(ctx context.Context, q SearchQuery) ([]Offer, error) {
	if err := q.Filters.validate(); err != nil {
		return nil, err
	}
	for _, o := range q.Order {
		if o[0] == "" || (o[1] != "asc" && o[1] != "desc") {
			return nil, fmt.Errorf("vast: order %v: want [field, asc|desc]", o)
		}
	}
	var resp struct {
		Offers json.RawMessage `json:"offers"`
	}
	err := c.call(ctx, callOpts{method: http.MethodPost, path: "/api/v0/bundles/", route: "/api/v0/bundles/", body: q, idempotent: true}, &resp)
	if err != nil {
		return nil, err
	}
	return decodeOffers(resp.Offers)
}

// decodeOffers reads "offers", an array; the spec's example shows one
// object, which is taken as a list of one rather than refused.
func decodeOffers(raw json.RawMessage) ([]Offer, error) {
	raw = json.RawMessage(strings.TrimSpace(string(raw)))
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var out []Offer
	if raw[0] == '{' {
		var one Offer
		if err := json.Unmarshal(raw, &one); err != nil {
			return nil, fmt.Errorf("vast: decoding offers: %w", err)
		}
		return []Offer{one}, nil
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("vast: decoding offers: %w", err)
	}
	return out, nil
}
