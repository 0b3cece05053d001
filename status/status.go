// Package status is the read-only status page that `crabbox-runner serve`
// shows at GET /: the live leases with their state, job, age and cost so
// far, today's spend by class and provider, and the last errors (lease
// errors and the warnings and errors logged lately).
//
// The page is server-rendered HTML with inline CSS and inline SVG (the
// timeline of each recent lease's phases and per-class p50/p95 bars,
// timeline.go): no JavaScript, nothing loaded from the network. It reads
// the store outside any transaction: per view one lease query and one
// query for the histories not yet kept (a released lease's history and a
// job are kept once read: neither changes any more). It shows no
// secret: no JIT config, key, token or host key is on it, and log records
// are reduced to their message and a few attributes. A Gate (gate.go)
// guards it, and serve's /metrics with the same check: the token when one
// is set (Bearer or HTTP Basic with the token as password), else open on a
// loopback-only address and closed on any other.
package status

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// Reader is what the page reads; provisioner.Store has it.
type Reader interface {
	Leases(ctx context.Context, f provisioner.LeaseFilter) ([]*provisioner.Lease, error)
	LeaseEventsOf(ctx context.Context, ids []string) (map[string][]provisioner.Event, error)
	LatestJob(ctx context.Context, id int64) (*provisioner.Job, error)
}

// DefaultWebURL is GitHub's web base when the API is github.com's.
const DefaultWebURL = "https://github.com"

// How much the page shows at most.
const (
	maxLiveRows     = 200
	maxReleasedRows = 50
	maxLeaseErrors  = 20
	maxErrorLen     = 600
	// refreshSeconds is how often a browser reloads the page (a meta
	// refresh: no script).
	refreshSeconds = 30
)

// Config configures the page.
type Config struct {
	// Store is read for leases, their history and their jobs. Required.
	Store Reader
	// Token, when set, is required: "Authorization: Bearer <token>", or
	// HTTP Basic with the token as password (any user name). Used only
	// when Gate is nil.
	Token string
	// Gate decides who may read the page; nil means NewGate(Token, true):
	// the token when set, else open. serve always passes its own.
	Gate *Gate
	// WebURL is GitHub's web base for job links (github.WebURL of the API
	// URL); default https://github.com.
	WebURL string
	// Deployment names this deployment in the page's title.
	Deployment string
	// Recent holds the warnings and errors logged lately; nil shows none.
	Recent *Recent
	// MinIdle is each class's min_idle, for the warm hosts section
	// (warm.go); no class with one: no section.
	MinIdle map[string]int
	// Now is the clock; time.Now by default.
	Now    func() time.Time
	Logger *slog.Logger
}

// Handler serves the status page.
type Handler struct {
	cfg  Config
	web  string
	gate *Gate
	csp  string

	// mu makes views take turns, so that a burst of reloads costs the
	// store no more than one view at a time, and guards the caches.
	mu sync.Mutex
	// history holds the histories of released leases, which can no
	// longer change.
	history map[string][]provisioner.Event
	// jobs holds the jobs already read, by id (repo, run and name do not
	// change).
	jobs map[int64]*provisioner.Job
}

//go:embed page.html
var pageHTML string

//go:embed style.css
var styleCSS string

//go:embed timeline.html
var timelineHTML string

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"money": money,
	"price": price,
	"age":   age,
	"clock": clock,
	"stamp": stamp,
	"span":  span,
}).Parse(pageHTML + timelineHTML + warmHTML))

// New returns the page's handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil {
		return nil, errors.New("status: a store is required")
	}
	if cfg.WebURL == "" {
		cfg.WebURL = DefaultWebURL
	}
	web, err := url.Parse(strings.TrimRight(cfg.WebURL, "/"))
	if err != nil || (web.Scheme != "https" && web.Scheme != "http") || web.Host == "" {
		return nil, fmt.Errorf("status: GitHub web URL %q is not an http(s) URL", cfg.WebURL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, web: web.String(), history: map[string][]provisioner.Event{}, jobs: map[int64]*provisioner.Job{}}
	h.gate = cfg.Gate
	if h.gate == nil {
		h.gate = NewGate(cfg.Token, true)
	}
	styleSum := sha256.Sum256([]byte(styleCSS))
	// Nothing but the page's own style may load or run.
	h.csp = "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(styleSum[:]) +
		"'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Content-Security-Policy", h.csp)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !h.gate.Allow(w, r) {
		return
	}
	data, err := h.build(r.Context())
	if err != nil {
		h.cfg.Logger.Warn("status page: reading the store", "error", err)
		http.Error(w, "the store did not answer; see the server's log", http.StatusServiceUnavailable)
		return
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, data); err != nil {
		h.cfg.Logger.Error("status page: rendering", "error", err)
		http.Error(w, "the page could not be rendered; see the server's log", http.StatusInternalServerError)
		return
	}
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Length", fmt.Sprint(buf.Len()))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(buf.Bytes())
}

// view is what the template renders.
type view struct {
	CSS        template.CSS
	Deployment string
	Now        time.Time
	Midnight   time.Time
	Refresh    int

	Live          []leaseRow
	LiveMore      int
	States        []stateCount
	Released      []leaseRow
	ReleasedCount int
	ReleasedMore  int

	Spend      []spendRow
	SpendTotal spendRow

	LeaseErrors []leaseError
	LogsKept    bool
	Logs        []logRow

	// Jobs not served (notserved.go).
	NotServedShown bool
	NotServed      []notServedRow
	NotServedMore  bool
	// UnusedToday is what hosts whose runner never got its job cost today.
	UnusedToday float64

	// Where the time goes (timeline.go).
	Timeline             []timelineRow
	TimelineMore         int
	TimelineW, TimelineH int
	BarsX, BarsFigX      int
	BarsCutX             int
	BarsW, StatsCap      int
	Bars                 []classBars
	Legend               []phaseLegend

	// Machines avoided after a failure (badmachines.go).
	BadShown bool
	Bad      []provisioner.BadMachine
	BadMore  bool

	// Warm hosts per class with min_idle (warm.go).
	WarmShown bool
	Warm      []warmRow
}

type stateCount struct {
	State string
	N     int
}

type leaseRow struct {
	ID, Class, State, Note string
	Provider, GPU          string
	// GPUCheck is the GPU gate's verdict on the host ("passed: …" or
	// "<rule>: found …, wanted …"); empty until checked.
	GPUCheck string
	// Interruptible: a bid host, which the market may take back.
	Interruptible bool
	// HedgeOf is the lease this one hedges (issue 18), while it races.
	HedgeOf           string
	Price             float64
	Job               jobCell
	Created, Released time.Time
	Age               time.Duration
	Cost              float64
	Billed            bool
}

type jobCell struct {
	ID int64
	// Intended: the job the lease was made for; its runner took no job yet.
	Intended   bool
	Name, Repo string
	Workflow   string
	Conclusion string
	URL        string // empty when the job or its run is not known
}

type spendRow struct {
	Class, Provider string
	Hosts           int // billed now
	PerHour         float64
	Today           float64
}

type leaseError struct {
	At                  time.Time
	Lease, Class, State string
	Error               string
}

type logRow struct {
	At      time.Time
	Level   string
	Message string
	Attrs   []LogAttr
}

// build reads what the page shows. One view at a time.
func (h *Handler) build(ctx context.Context) (*view, error) {
	h.mu.Lock()
	defer h.mu.Unlock()

	now := h.cfg.Now().UTC()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	leases, err := h.cfg.Store.Leases(ctx, provisioner.LeaseFilter{ReleasedSince: midnight})
	if err != nil {
		return nil, err
	}
	v := &view{CSS: template.CSS(styleCSS), Deployment: h.cfg.Deployment, Now: now, Midnight: midnight, Refresh: refreshSeconds,
		LogsKept: h.cfg.Recent != nil}

	seen := make(map[string]bool, len(leases))
	spend := map[[2]string]*spendRow{}
	states := map[provisioner.State]int{}
	type costed struct {
		l    *provisioner.Lease
		cost float64
	}
	var live, released []costed
	var errs []*provisioner.Lease
	leases = slices.DeleteFunc(leases, func(l *provisioner.Lease) bool {
		return l.State == provisioner.StateReleased && l.ReleasedAt.Before(midnight) // a store that ignores ReleasedSince
	})
	histories, err := h.histories(ctx, leases)
	if err != nil {
		return nil, err
	}
	timed := make([]timedLease, 0, len(leases))
	for _, l := range leases {
		seen[l.ID] = true
		events := histories[l.ID]
		timed = append(timed, timedLease{l: l, life: phases(l, events, now)})
		c := costed{l: l, cost: provisioner.Cost(l, events, now)}
		if l.Provider != "" {
			k := [2]string{l.Class, l.Provider}
			s := spend[k]
			if s == nil {
				s = &spendRow{Class: l.Class, Provider: l.Provider}
				spend[k] = s
			}
			today := provisioner.CostBetween(l, events, now, midnight, time.Time{})
			s.Today += today
			if l.ReleaseReason == provisioner.ReasonUnusedRunner {
				v.UnusedToday += today
			}
			if billedNow(l) {
				s.Hosts++
				s.PerHour += l.PricePerHour
			}
		}
		if l.Error != "" {
			errs = append(errs, l)
		}
		if l.State == provisioner.StateReleased {
			released = append(released, c)
		} else {
			states[l.State]++
			live = append(live, c)
		}
	}
	h.forgetLeases(seen)
	v.timeline(timed)

	// Newest first.
	slices.SortStableFunc(live, func(a, b costed) int { return b.l.CreatedAt.Compare(a.l.CreatedAt) })
	slices.SortStableFunc(released, func(a, b costed) int { return b.l.ReleasedAt.Compare(a.l.ReleasedAt) })
	if len(live) > maxLiveRows {
		v.LiveMore = len(live) - maxLiveRows
		live = live[:maxLiveRows]
	}
	v.ReleasedCount = len(released)
	if len(released) > maxReleasedRows {
		v.ReleasedMore = len(released) - maxReleasedRows
		released = released[:maxReleasedRows]
	}
	used := map[int64]bool{}
	for _, c := range live {
		row, err := h.row(ctx, c.l, c.cost, now)
		if err != nil {
			return nil, err
		}
		used[row.Job.ID] = true
		v.Live = append(v.Live, row)
	}
	for _, c := range released {
		row, err := h.row(ctx, c.l, c.cost, now)
		if err != nil {
			return nil, err
		}
		used[row.Job.ID] = true
		v.Released = append(v.Released, row)
	}
	h.forgetJobs(used)
	for _, s := range provisioner.AllStates {
		if states[s] > 0 {
			v.States = append(v.States, stateCount{State: string(s), N: states[s]})
		}
	}

	for _, s := range spend {
		v.Spend = append(v.Spend, *s)
		v.SpendTotal.Hosts += s.Hosts
		v.SpendTotal.PerHour += s.PerHour
		v.SpendTotal.Today += s.Today
	}
	slices.SortFunc(v.Spend, func(a, b spendRow) int {
		return cmp.Or(cmp.Compare(a.Class, b.Class), cmp.Compare(a.Provider, b.Provider))
	})

	slices.SortStableFunc(errs, func(a, b *provisioner.Lease) int { return b.UpdatedAt.Compare(a.UpdatedAt) })
	for _, l := range errs[:min(len(errs), maxLeaseErrors)] {
		v.LeaseErrors = append(v.LeaseErrors, leaseError{At: l.UpdatedAt, Lease: l.ID, Class: l.Class,
			State: string(l.State), Error: cut(l.Error, maxErrorLen)})
	}
	if err := h.notServed(ctx, v); err != nil {
		return nil, err
	}
	if err := h.badMachines(ctx, v); err != nil {
		return nil, err
	}
	h.warmHosts(v, leases)
	for _, rec := range h.cfg.Recent.Records() {
		v.Logs = append(v.Logs, logRow{At: rec.Time, Level: rec.Level.String(), Message: rec.Message, Attrs: rec.Attrs})
	}
	return v, nil
}

// billedNow reports whether a lease's host is running up its bill now.
func billedNow(l *provisioner.Lease) bool {
	return l.InstanceID != "" && l.State != provisioner.StateReleased
}

// histories returns the histories of the page's leases: those kept, and
// the rest in one read (LeaseEventsOf). A released lease's history is
// kept: nothing is added to it any more.
func (h *Handler) histories(ctx context.Context, leases []*provisioner.Lease) (map[string][]provisioner.Event, error) {
	out := make(map[string][]provisioner.Event, len(leases))
	var ids []string
	for _, l := range leases {
		if ev, ok := h.history[l.ID]; ok {
			out[l.ID] = ev
		} else {
			ids = append(ids, l.ID)
		}
	}
	if len(ids) == 0 {
		return out, nil
	}
	read, err := h.cfg.Store.LeaseEventsOf(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, l := range leases {
		ev, ok := read[l.ID]
		if !ok {
			continue
		}
		out[l.ID] = ev
		if l.State == provisioner.StateReleased {
			h.history[l.ID] = ev
		}
	}
	return out, nil
}

// job returns a workflow job, read once; nil when the store does not know it.
func (h *Handler) job(ctx context.Context, id int64) (*provisioner.Job, error) {
	if j, ok := h.jobs[id]; ok {
		return j, nil
	}
	j, err := h.cfg.Store.LatestJob(ctx, id)
	if errors.Is(err, provisioner.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	h.jobs[id] = j
	return j, nil
}

// forgetLeases drops the history kept for leases no longer on the page,
// so the cache stays as small as the page.
func (h *Handler) forgetLeases(seen map[string]bool) {
	for id := range h.history {
		if !seen[id] {
			delete(h.history, id)
		}
	}
}

// forgetJobs drops the jobs kept that no row of the page showed.
func (h *Handler) forgetJobs(used map[int64]bool) {
	for id := range h.jobs {
		if !used[id] {
			delete(h.jobs, id)
		}
	}
}

func (h *Handler) row(ctx context.Context, l *provisioner.Lease, cost float64, now time.Time) (leaseRow, error) {
	r := leaseRow{ID: l.ID, Class: l.Class, State: string(l.State), Provider: l.Provider, GPU: l.GPU,
		Price: l.PricePerHour, Created: l.CreatedAt, Released: l.ReleasedAt, Cost: cost, Billed: billedNow(l),
		GPUCheck: cut(l.GPUCheck, 200), Interruptible: l.Interruptible, HedgeOf: l.HedgeOf}
	end := now
	if l.State == provisioner.StateReleased && !l.ReleasedAt.IsZero() {
		end = l.ReleasedAt
	}
	r.Age = max(end.Sub(l.CreatedAt), 0)
	switch {
	case l.ReleaseReason != "" && l.State != provisioner.StateReleased:
		r.Note = "releasing: " + l.ReleaseReason
	case l.Error != "" && l.State != provisioner.StateReleased:
		r.Note = l.Error
	case l.State == provisioner.StateReleased && l.ReleaseReason != "":
		r.Note = l.ReleaseReason
	}
	r.Note = cut(r.Note, 160)

	id := l.BoundJobID
	if id == 0 {
		id = l.JobID
		r.Job.Intended = id != 0
	}
	if id == 0 {
		return r, nil
	}
	r.Job.ID = id
	j, err := h.job(ctx, id)
	if err != nil || j == nil {
		return r, err
	}
	r.Job.Name, r.Job.Repo, r.Job.Workflow, r.Job.Conclusion = j.Name, j.Repo, j.WorkflowName, j.Conclusion
	r.Job.URL = h.jobURL(j)
	return r, nil
}

// jobURL is the job's page on GitHub: {web}/{owner}/{repo}/actions/runs/{run}/job/{job}.
func (h *Handler) jobURL(j *provisioner.Job) string {
	owner, name, ok := strings.Cut(j.Repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") || j.RunID <= 0 || j.ID <= 0 {
		return ""
	}
	return github.JobURL(h.web, url.PathEscape(owner)+"/"+url.PathEscape(name), j.RunID, j.ID)
}

// money formats dollars: cents, and "<$0.01" for less than a cent spent.
func money(v float64) string {
	switch {
	case v <= 0:
		return "$0.00"
	case v < 0.005:
		return "<$0.01"
	}
	return fmt.Sprintf("$%.2f", v)
}

// price formats an hourly price with up to three decimals.
func price(v float64) string {
	if v <= 0 {
		return "—"
	}
	s := fmt.Sprintf("%.3f", v)
	if strings.HasSuffix(s, "0") {
		s = s[:len(s)-1]
	}
	return "$" + s + "/h"
}

// age formats a duration the way people read it: 45s, 12m 05s, 3h 04m, 2d 3h.
func age(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

// clock is a time of day in UTC, with the date when it is not today's.
func clock(t, now time.Time) string {
	if t.IsZero() {
		return "—"
	}
	t = t.UTC()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04:05")
	}
	return t.Format("Jan 2 15:04")
}

// stamp is a full UTC timestamp (for datetime and title attributes).
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
