package status_test

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
	"github.com/crabbox/crabbox-runner/store/sqlite"
)

// seedTimeline writes leases whose phases are known to the second (the
// page's clock is 15:00):
//
//	t-full  a100  every phase: queued 10s, create 30s, boot 2m 20s, SSH 1m, idle 30s, job 30m, release 30s
//	t-fail  a100  failed while booting after 5m, released 1m later
//	t-busy  h100  still busy: its job has run 10m so far
func seedTimeline(t *testing.T) *seeded {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "timeline.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := &seeded{st: st}
	st.SetNow(s.now)
	org := provisioner.Scope{Org: "acme", InstallationID: 7}
	sec := func(h, m, sec int) time.Time { return at(h, m).Add(time.Duration(sec) * time.Second) }

	full := &provisioner.Lease{ID: "t-full", Class: "a100", Scope: org, Provider: "vast", GPU: "A100", PricePerHour: 1,
		JobID: 201, RunAttempt: 1, QueuedAt: sec(10, 0, 0)}
	s.lease(t, full, sec(10, 0, 1),
		step{sec(10, 0, 10), provisioner.StateProvisioning, nil},
		step{sec(10, 0, 40), provisioner.StateBooting, host("full")},
		step{sec(10, 3, 0), provisioner.StateBootstrapping, nil},
		step{sec(10, 4, 0), provisioner.StateIdle, nil},
		step{sec(10, 4, 30), provisioner.StateBusy, func(l *provisioner.Lease) { l.BoundJobID = 201 }},
		step{sec(10, 34, 30), provisioner.StateReleasing, nil},
		step{sec(10, 35, 0), provisioner.StateReleased, released(sec(10, 35, 0), "job completed")})

	fail := &provisioner.Lease{ID: "t-fail", Class: "a100", Scope: org, Provider: "vast", GPU: "A100", PricePerHour: 1,
		JobID: 202, RunAttempt: 1, QueuedAt: sec(11, 0, 0)}
	s.lease(t, fail, sec(11, 0, 0),
		step{sec(11, 0, 5), provisioner.StateProvisioning, nil},
		step{sec(11, 0, 20), provisioner.StateBooting, host("fail")},
		step{sec(11, 5, 20), provisioner.StateFailed, func(l *provisioner.Lease) { l.Error = "boot timeout" }},
		step{sec(11, 5, 30), provisioner.StateReleasing, nil},
		step{sec(11, 6, 20), provisioner.StateReleased, released(sec(11, 6, 20), "boot timeout")})

	busy := &provisioner.Lease{ID: "t-busy", Class: "h100", Scope: org, Provider: "lambda", GPU: "H100", PricePerHour: 3,
		JobID: 203, RunAttempt: 1, QueuedAt: sec(14, 40, 0)}
	s.lease(t, busy, sec(14, 40, 0),
		step{sec(14, 40, 2), provisioner.StateProvisioning, nil},
		step{sec(14, 40, 4), provisioner.StateBooting, host("busy")},
		step{sec(14, 46, 0), provisioner.StateBootstrapping, nil},
		step{sec(14, 50, 0), provisioner.StateBusy, func(l *provisioner.Lease) { l.BoundJobID = 203 }})
	return s
}

var phaseTitle = regexp.MustCompile(`<g class="seg ph-([a-z]+)( open)?" data-phase="[a-z]+"><title>([^<]*)</title>`)

// timelineRow returns the phases drawn on a lease's timeline row, as
// "phase open? title".
func timelineSegments(t *testing.T, body, id string) []string {
	t.Helper()
	i := strings.Index(body, `id="tl-`+id+`"`)
	if i < 0 {
		t.Fatalf("no timeline row for %s", id)
	}
	end := strings.Index(body[i:], "</tr>")
	var out []string
	for _, m := range phaseTitle.FindAllStringSubmatch(body[i:i+end], -1) {
		out = append(out, m[1]+m[2]+" "+m[3])
	}
	return out
}

func TestTimelineDrawsEachLeasesPhases(t *testing.T) {
	s := seedTimeline(t)
	resp, body := get(t, newHandler(t, s.st, "", nil), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	cases := map[string][]string{
		"t-full": {
			"queued queued: 10s (job delivered → create call)",
			"create create: 30s (create call → host created)",
			"boot boot: 2m 20s (host created → SSH reachable)",
			"bootstrap SSH/bootstrap: 1m 00s (SSH reachable → runner online)",
			"idle runner idle: 30s (runner online → job assigned)",
			"job job: 30m 00s (job assigned → job done)",
			"release release: 30s (release asked → host destroyed)",
		},
		"t-fail": {
			"queued queued: 5.0s (job delivered → create call)",
			"create create: 15s (create call → host created)",
			"boot boot: 5m 00s (host created → SSH reachable)",
			"release release: 1m 00s (release asked → host destroyed)",
		},
		"t-busy": {
			"queued queued: 2.0s (job delivered → create call)",
			"create create: 2.0s (create call → host created)",
			"boot boot: 5m 56s (host created → SSH reachable)",
			"bootstrap SSH/bootstrap: 4m 00s (SSH reachable → runner online)",
			"job open job: 10m 00s so far (job assigned → job done; under way)",
		},
	}
	for id, want := range cases {
		got := timelineSegments(t, body, id)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s's timeline:\n%s\nwant\n%s", id, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	// Newest first, with the total written.
	if a, b, c := strings.Index(body, `id="tl-t-busy"`), strings.Index(body, `id="tl-t-fail"`), strings.Index(body, `id="tl-t-full"`); !(a < b && b < c) {
		t.Error("timeline rows are not newest first")
	}
	for _, want := range []string{"35m 00s</td>", "6m 20s<div class=\"note\">failed</div>", "20m 00s <span class=\"dim\">so far</span>"} {
		if !strings.Contains(body, want) {
			t.Errorf("the timeline lacks the total %q", want)
		}
	}
	// No width is negative and every segment lies within the row.
	for _, m := range regexp.MustCompile(`<rect x="([-0-9.]+)" y="1" width="([-0-9.]+)"`).FindAllStringSubmatch(body, -1) {
		if strings.HasPrefix(m[1], "-") || strings.HasPrefix(m[2], "-") {
			t.Errorf("a segment at x=%s is %s wide", m[1], m[2])
		}
	}

	// a100: two leases, but the failed lease's boot was cut short and
	// does not count: boot is t-full's alone.
	a100 := body[strings.Index(body, `id="bars-a100"`):]
	a100 = a100[:strings.Index(a100, "</svg>")]
	for _, want := range []string{"over 2 leases", "boot p50 2m 20s · p95 2m 20s · n=1", "queued p50 5.0s · p95 10s · n=2",
		"release p50 30s · p95 1m 00s · n=2", "to runner online p50 4m 00s · p95 4m 00s · n=1", "job p50 30m 00s · p95 30m 00s · n=1"} {
		if !strings.Contains(a100, want) {
			t.Errorf("a100's bars lack %q:\n%s", want, a100)
		}
	}
	h100 := body[strings.Index(body, `id="bars-h100"`):]
	h100 = h100[:strings.Index(h100, "</svg>")]
	for _, want := range []string{"over 1 lease;", "runner idle p50 0s · p95 0s · n=1", "to runner online p50 10m 00s"} {
		if !strings.Contains(h100, want) {
			t.Errorf("h100's bars lack %q:\n%s", want, h100)
		}
	}
	if strings.Contains(h100, "job p50") {
		t.Error("a job still running counts in the bars")
	}
}
