package vasttest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"

	"github.com/crabbox/crabbox-runner/internal/fakegpu"
)

// Offer is one machine on the fake market. Its JSON form (row) follows
// Vast's offer objects: memory in MB, storage_cost in $/GB/month, dph_total
// computed from the search's allocated_storage.
type Offer struct {
	ID        int64
	MachineID int64
	HostID    int64
	GPUName   string // "RTX 4090", with spaces
	NumGPUs   int
	GPURAM    float64 // MB per GPU
	DphBase   float64 // $/h, compute
	// StorageCost is $/GB/month; the disk adds StorageCost×GB/720 per hour.
	StorageCost float64
	Reliability float64
	Unverified  bool
	External    bool
	// Datacenter marks a secure-cloud offer. vast-openapi.yaml has
	// datacenter as a search filter ("Show only datacenter offers"); the
	// result field of the same name is assumed (UNSURE: not in the spec's
	// offer examples), so the fake answers it and the client also trusts
	// the filter when a result lacks it.
	Datacenter      bool
	Geolocation     string // free text, "Texas, US"
	DirectPortCount int
	DiskSpace       float64 // GB available
	CUDAMaxGood     float64
	// DriverVersion is the machine's driver, "550.54.15": answered as
	// driver_version (a result field, vast-api.md §3.1) and what the
	// host's nvidia-smi says (fakegpu.DefaultDriver when empty).
	DriverVersion string
	InetUpCost    float64
	InetDownCost  float64
	// CPUArch is the offer's cpu_arch: "amd64" when empty, "arm64" for a
	// GH200 host.
	CPUArch string
	// MinBid is the offer's min_bid, $/h per machine ("current minimum bid
	// price in $/hr for interruptible", vast-ai/vast-cli vast.py search
	// offers help); 0: 60% of DphBase, as the fake always answered.
	MinBid float64
}

// MinBidPrice is the offer's current min_bid.
func (o Offer) MinBidPrice() float64 {
	if o.MinBid > 0 {
		return round6(o.MinBid)
	}
	return round6(o.DphBase * 0.6)
}

// DefaultOffers is a small market with the traps a client must avoid:
// cheaper offers that do not fit (wrong GPU, unverified, unreliable, no
// direct ports, too little memory, two GPUs, old driver). Names and
// gpu_ram readings are real ones (sources in CatalogOffers; a V100 16 GB
// reads 16160 MiB); CatalogOffers has every variant of the common GPUs.
var DefaultOffers = []Offer{
	{ID: 5000101, MachineID: 101, HostID: 11, GPUName: "RTX 4090", NumGPUs: 1, GPURAM: 24564, DphBase: 0.30, StorageCost: 0.15, Reliability: 0.995, Geolocation: "Texas, US", DirectPortCount: 100, DiskSpace: 500, CUDAMaxGood: 12.8},
	{ID: 5000102, MachineID: 102, HostID: 12, GPUName: "RTX 4090", NumGPUs: 1, GPURAM: 24564, DphBase: 0.25, StorageCost: 0.10, Reliability: 0.99, Unverified: true, Geolocation: "Ontario, CA", DirectPortCount: 20, DiskSpace: 300, CUDAMaxGood: 12.8},
	{ID: 5000103, MachineID: 103, HostID: 13, GPUName: "RTX 3090", NumGPUs: 1, GPURAM: 24576, DphBase: 0.15, StorageCost: 0.10, Reliability: 0.98, Geolocation: "Poland, PL", DirectPortCount: 10, DiskSpace: 200, CUDAMaxGood: 12.4},
	{ID: 5000201, MachineID: 201, HostID: 21, GPUName: "A100 PCIE", NumGPUs: 1, GPURAM: 40960, DphBase: 0.80, StorageCost: 0.20, Reliability: 0.99, Geolocation: "Quebec, CA", DirectPortCount: 50, DiskSpace: 800, CUDAMaxGood: 12.6},
	{ID: 5000202, MachineID: 202, HostID: 22, GPUName: "A100 SXM4", NumGPUs: 1, GPURAM: 81920, DphBase: 1.10, StorageCost: 0.20, Reliability: 0.995, Geolocation: "Oregon, US", DirectPortCount: 64, DiskSpace: 1000, CUDAMaxGood: 12.8, Datacenter: true},
	{ID: 5000203, MachineID: 203, HostID: 22, GPUName: "A100 SXM4", NumGPUs: 2, GPURAM: 81920, DphBase: 2.20, StorageCost: 0.20, Reliability: 0.995, Geolocation: "Oregon, US", DirectPortCount: 64, DiskSpace: 2000, CUDAMaxGood: 12.8},
	{ID: 5000204, MachineID: 204, HostID: 23, GPUName: "A100 SXM4", NumGPUs: 1, GPURAM: 81920, DphBase: 0.95, StorageCost: 0.20, Reliability: 0.99, Geolocation: "Virginia, US", DirectPortCount: 0, DiskSpace: 1000, CUDAMaxGood: 12.8},
	{ID: 5000205, MachineID: 205, HostID: 24, GPUName: "A100 PCIE", NumGPUs: 1, GPURAM: 40960, DphBase: 0.70, StorageCost: 0.20, Reliability: 0.80, Geolocation: "Sweden, SE", DirectPortCount: 30, DiskSpace: 500, CUDAMaxGood: 12.6},
	{ID: 5000206, MachineID: 206, HostID: 25, GPUName: "A100X", NumGPUs: 1, GPURAM: 81920, DphBase: 0.90, StorageCost: 0.20, Reliability: 0.99, Geolocation: "Utah, US", DirectPortCount: 30, DiskSpace: 500, CUDAMaxGood: 12.8},
	{ID: 5000207, MachineID: 207, HostID: 26, GPUName: "A100 PCIE", NumGPUs: 1, GPURAM: 40960, DphBase: 0.60, StorageCost: 0.20, Reliability: 0.99, Geolocation: "Texas, US", DirectPortCount: 30, DiskSpace: 500, CUDAMaxGood: 11.8},
	{ID: 5000301, MachineID: 301, HostID: 31, GPUName: "H100 SXM", NumGPUs: 1, GPURAM: 81559, DphBase: 2.10, StorageCost: 0.25, Reliability: 0.999, Geolocation: "Finland, FI", DirectPortCount: 100, DiskSpace: 2000, CUDAMaxGood: 12.8},
	{ID: 5000401, MachineID: 401, HostID: 41, GPUName: "Tesla V100", NumGPUs: 1, GPURAM: 16160, DphBase: 0.20, StorageCost: 0.10, Reliability: 0.97, Geolocation: "Germany, DE", DirectPortCount: 10, DiskSpace: 200, CUDAMaxGood: 12.2},
}

// hoursPerMonth converts storage_cost to an hourly price (30 days).
const hoursPerMonth = 720

// DphTotal is the offer's price per hour with disk GB of storage.
func (o Offer) DphTotal(disk float64) float64 {
	return round6(o.DphBase + o.StorageCost*disk/hoursPerMonth)
}

func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }

// row is the offer as Vast's search answers it. Numbers are mixed ints and
// floats, and some fields are null, as on the real service.
//
// A bid search (type "bid": "Show 'on-demand', 'reserved', or
// 'bid'(interruptible) pricing", vast-cli vast.py search offers) answers
// the same machines with interruptible pricing: compute at min_bid and
// is_bid true. How the real answer fills dph_base and dph_total for a bid
// search is not documented; this is the plausible reading, and the client
// prices a bid from min_bid and storage_cost alone.
func (o Offer) row(disk float64, rented, bid bool) map[string]any {
	verification := "verified"
	if o.Unverified {
		verification = "unverified"
	}
	total, base := o.DphTotal(disk), o.DphBase
	if bid {
		base = o.MinBidPrice()
		total = round6(base + o.StorageCost*disk/hoursPerMonth)
	}
	return map[string]any{
		"id": o.ID, "ask_contract_id": o.ID, "bundle_id": o.ID + 900000000,
		"machine_id": o.MachineID, "host_id": o.HostID,
		"gpu_name": o.GPUName, "num_gpus": o.NumGPUs,
		"gpu_ram": o.GPURAM, "gpu_total_ram": o.GPURAM * float64(o.NumGPUs),
		"gpu_arch": "nvidia", "cpu_arch": cmp.Or(o.CPUArch, "amd64"),
		"cpu_cores": nil, "cpu_cores_effective": 8.0, "cpu_ram": 64000,
		"disk_space": o.DiskSpace, "dph_base": base, "dph_total": total,
		"storage_cost": o.StorageCost, "storage_total_cost": round6(o.StorageCost * disk / hoursPerMonth),
		"inet_up_cost": o.InetUpCost, "inet_down_cost": o.InetDownCost,
		"min_bid": o.MinBidPrice(), "is_bid": bid,
		"reliability": o.Reliability, "reliability2": o.Reliability,
		"verification": verification, "verified": !o.Unverified,
		"rentable": true, "rented": rented, "external": o.External, "datacenter": o.Datacenter, "static_ip": false,
		"geolocation": o.Geolocation, "public_ipaddr": "127.0.0.1",
		"direct_port_count": o.DirectPortCount, "cuda_max_good": o.CUDAMaxGood,
		"driver_version": cmp.Or(o.DriverVersion, fakegpu.DefaultDriver),
		"compute_cap":    800, "inet_up": 900.5, "inet_down": 1800.2,
		"score": 100.0 / math.Max(total, 0.01), "dlperf": 30.5, "total_flops": 19.5,
		"duration": 2592000.0, "end_date": 1893456000,
		"search": map[string]any{"gpuCostPerHour": base, "diskHour": round6(o.StorageCost * disk / hoursPerMonth), "totalHour": total},
	}
}

// fieldKind says how a search filter's value is checked.
type fieldKind int

const (
	kNum     fieldKind = iota
	kBool              // true/false
	kStr               // any string
	kGPU               // a gpu_name: spaces, never the CLI's underscores
	kCountry           // two-letter country codes
	kMB                // MB: a small number is GB sent by mistake
	kFrac              // 0..1
	kSeconds           // seconds: a small number is days sent by mistake
)

// searchFields are the filter fields of POST /bundles (spec searchOffers).
var searchFields = map[string]fieldKind{
	"verified": kBool, "rentable": kBool, "rented": kBool, "external": kBool, "datacenter": kBool,
	"static_ip": kBool, "is_bid": kBool, "vms_enabled": kBool, "gpu_display_active": kBool, "has_avx": kBool,
	"gpu_name": kGPU, "verification": kStr, "geolocation": kCountry, "cpu_arch": kStr, "gpu_arch": kStr,
	"mobo_name": kStr, "os_version": kStr, "ubuntu_version": kStr, "driver_version": kStr,
	"gpu_ram": kMB, "gpu_total_ram": kMB, "cpu_ram": kMB,
	"reliability": kFrac, "reliability2": kFrac, "gpu_frac": kFrac,
	"duration": kSeconds,
	"num_gpus": kNum, "dph_total": kNum, "dph_base": kNum, "disk_space": kNum, "direct_port_count": kNum,
	"cuda_max_good": kNum, "compute_cap": kNum, "inet_up": kNum, "inet_down": kNum, "inet_up_cost": kNum,
	"inet_down_cost": kNum, "id": kNum, "machine_id": kNum, "host_id": kNum, "cpu_cores": kNum,
	"cpu_cores_effective": kNum, "cpu_ghz": kNum, "dlperf": kNum, "dlperf_per_dphtotal": kNum,
	"flops_per_dphtotal": kNum, "total_flops": kNum, "min_bid": kNum, "storage_cost": kNum,
	"disk_bw": kNum, "bw_nvlink": kNum, "gpu_max_power": kNum, "gpu_max_temp": kNum, "gpu_mem_bw": kNum,
	"pci_gen": kNum, "pcie_bw": kNum, "score": kNum,
}

var ops = map[string]bool{"eq": true, "neq": true, "gt": true, "gte": true, "lt": true, "lte": true, "in": true, "notin": true}

// searchRequest is a validated search body.
type searchRequest struct {
	filters map[string]map[string]any
	order   [][2]string
	limit   int
	disk    float64
	bid     bool // type "bid"
}

// parseSearch checks a search body the way a strict server would: known
// fields only, operator objects with known operators, values of the right
// type and unit.
func parseSearch(body []byte) (*searchRequest, *apiErr) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return nil, badRequest("invalid_request", "Invalid json body")
	}
	req := &searchRequest{filters: map[string]map[string]any{}, limit: 64, disk: 8}
	for key, val := range raw {
		switch key {
		case "type":
			var t string
			if json.Unmarshal(val, &t) != nil || (t != "on-demand" && t != "ondemand" && t != "bid" && t != "reserved") {
				return nil, badRequest("invalid_request", "type must be one of on-demand, bid, reserved")
			}
			req.bid = t == "bid"
		case "limit":
			var n float64
			if json.Unmarshal(val, &n) != nil || n < 1 || n != math.Trunc(n) {
				return nil, badRequest("invalid_request", "limit must be a positive integer")
			}
			req.limit = int(n)
		case "allocated_storage":
			if json.Unmarshal(val, &req.disk) != nil || req.disk <= 0 || req.disk > 100000 {
				return nil, badRequest("invalid_request", "allocated_storage must be a number of GB")
			}
		case "order":
			var order [][]string
			if json.Unmarshal(val, &order) != nil {
				return nil, badRequest("invalid_request", "order must be a list of [field, direction] pairs")
			}
			for _, o := range order {
				if len(o) != 2 || (o[1] != "asc" && o[1] != "desc") {
					return nil, badRequest("invalid_request", "order entries are [field, \"asc\"|\"desc\"]")
				}
				if _, ok := searchFields[o[0]]; !ok {
					return nil, badRequest("invalid_request", "cannot order by "+o[0])
				}
				req.order = append(req.order, [2]string{o[0], o[1]})
			}
		case "disable_bundling":
		default:
			kind, ok := searchFields[key]
			if !ok {
				return nil, badRequest("invalid_request", "unknown search field "+key)
			}
			cond, e := parseCond(key, kind, val)
			if e != nil {
				return nil, e
			}
			req.filters[key] = cond
		}
	}
	return req, nil
}

func parseCond(field string, kind fieldKind, raw json.RawMessage) (map[string]any, *apiErr) {
	var cond map[string]any
	if err := json.Unmarshal(raw, &cond); err != nil || len(cond) == 0 {
		return nil, badRequest("invalid_request", fmt.Sprintf("%s must be an operator object like {\"eq\": …}", field))
	}
	for op, v := range cond {
		if !ops[op] {
			return nil, badRequest("invalid_request", fmt.Sprintf("%s: unknown operator %q", field, op))
		}
		vals := []any{v}
		if op == "in" || op == "notin" {
			list, ok := v.([]any)
			if !ok {
				return nil, badRequest("invalid_request", fmt.Sprintf("%s: %s takes a list", field, op))
			}
			vals = list
		}
		for _, x := range vals {
			if msg := checkValue(field, kind, op, x); msg != "" {
				return nil, badRequest("invalid_request", msg)
			}
		}
	}
	return cond, nil
}

func checkValue(field string, kind fieldKind, op string, v any) string {
	num, isNum := v.(float64)
	switch kind {
	case kBool:
		if _, ok := v.(bool); !ok {
			return field + " takes true or false"
		}
	case kStr:
		if _, ok := v.(string); !ok {
			return field + " takes a string"
		}
	case kGPU:
		s, ok := v.(string)
		if !ok || s == "" {
			return "gpu_name takes a GPU name"
		}
		if strings.Contains(s, "_") {
			return fmt.Sprintf("gpu_name %q: GPU names are written with spaces (\"RTX 4090\"); underscores are CLI syntax", s)
		}
	case kCountry:
		s, ok := v.(string)
		if !ok || len(s) != 2 || strings.ToUpper(s) != s {
			return fmt.Sprintf("geolocation %v: give two-letter country codes such as \"US\"", v)
		}
	case kMB:
		if !isNum {
			return field + " takes a number of MB"
		}
		if num > 0 && num < 256 {
			return fmt.Sprintf("%s %v: the unit is MB; that looks like GB", field, num)
		}
	case kFrac:
		if !isNum || num < 0 || num > 1 {
			return field + " takes a number from 0 to 1"
		}
	case kSeconds:
		if !isNum {
			return field + " takes seconds"
		}
		if num > 0 && num < 3600 {
			return fmt.Sprintf("%s %v: the unit is seconds; that looks like days", field, num)
		}
	default:
		if !isNum {
			return fmt.Sprintf("%s %s: takes a number, not %T", field, op, v)
		}
	}
	return ""
}

// matches evaluates the filters on one row.
func (r *searchRequest) matches(row map[string]any) bool {
	for field, cond := range r.filters {
		have, ok := row[field]
		if field == "geolocation" {
			have = countryOf(fmt.Sprint(row["geolocation"]))
		}
		for op, want := range cond {
			if !ok || have == nil {
				if op == "neq" || op == "notin" {
					continue
				}
				return false
			}
			if !compare(op, have, want) {
				return false
			}
		}
	}
	return true
}

func countryOf(geo string) string {
	if i := strings.LastIndex(geo, ","); i >= 0 {
		return strings.TrimSpace(geo[i+1:])
	}
	return strings.TrimSpace(geo)
}

func compare(op string, have, want any) bool {
	switch op {
	case "eq":
		return equal(have, want)
	case "neq":
		return !equal(have, want)
	case "in", "notin":
		in := false
		for _, w := range want.([]any) {
			if equal(have, w) {
				in = true
				break
			}
		}
		return in == (op == "in")
	}
	h, ok1 := toFloat(have)
	w, ok2 := toFloat(want)
	if !ok1 || !ok2 {
		return false
	}
	switch op {
	case "gt":
		return h > w
	case "gte":
		return h >= w
	case "lt":
		return h < w
	case "lte":
		return h <= w
	}
	return false
}

func equal(a, b any) bool {
	if fa, ok := toFloat(a); ok {
		fb, ok := toFloat(b)
		return ok && fa == fb
	}
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	return 0, false
}

// search answers one validated request from the market.
func search(req *searchRequest, market []Offer, rented func(int64) bool) []map[string]any {
	var rows []map[string]any
	for _, o := range market {
		row := o.row(req.disk, rented(o.ID), req.bid)
		if req.matches(row) {
			rows = append(rows, row)
		}
	}
	order := req.order
	if len(order) == 0 {
		order = [][2]string{{"score", "desc"}}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		for _, o := range order {
			a, _ := toFloat(rows[i][o[0]])
			b, _ := toFloat(rows[j][o[0]])
			if a != b {
				return (a < b) == (o[1] == "asc")
			}
		}
		return false
	})
	if len(rows) > req.limit {
		rows = rows[:req.limit]
	}
	return rows
}

// apiErr is an error answer in one of Vast's body styles.
type apiErr struct {
	status      int
	body        string
	contentType string
}

func jsonErr(status int, v any) *apiErr {
	b, _ := json.Marshal(v)
	return &apiErr{status: status, body: string(b), contentType: "application/json"}
}

func badRequest(code, msg string) *apiErr {
	return jsonErr(http.StatusBadRequest, map[string]any{"success": false, "error": code, "msg": msg})
}
