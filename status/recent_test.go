package status_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/status"
)

func TestRecentKeepsTheLastWarningsAndErrors(t *testing.T) {
	var out bytes.Buffer
	recent := status.NewRecent(3)
	log := slog.New(recent.Handler(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelError})))
	log.Info("not kept")
	for i := 1; i <= 5; i++ {
		log.Warn(fmt.Sprintf("warning %d", i))
	}
	log.Error("the error")

	got := recent.Records()
	var msgs []string
	for _, r := range got {
		msgs = append(msgs, r.Message)
	}
	if strings.Join(msgs, ",") != "the error,warning 5,warning 4" {
		t.Fatalf("kept %v, want the last three, newest first", msgs)
	}
	if got[0].Level != slog.LevelError || got[1].Level != slog.LevelWarn || got[0].Time.IsZero() {
		t.Fatalf("records %+v", got)
	}
	// The wrapped handler logs at its own level: warnings are kept for the
	// page even where the log shows errors only.
	if s := out.String(); strings.Contains(s, "warning") || !strings.Contains(s, "the error") {
		t.Fatalf("log output %q", s)
	}
}

func TestRecentKeepsOnlySelectedAttributes(t *testing.T) {
	var out bytes.Buffer
	recent := status.NewRecent(0)
	log := slog.New(recent.Handler(slog.NewJSONHandler(&out, nil)))
	log = log.With("component", "provisioner", "host_key", "ssh-ed25519 AAAA")
	log.Warn("create failed", "lease_id", "l1", "class", "a100", "provider", "vast", "error", "capacity",
		"ssh_private_key", "-----BEGIN", "lease_id", "l2")
	log.WithGroup("req").Warn("in a group", "lease_id", "hidden")
	log.Warn(strings.Repeat("x", 1000), "error", strings.Repeat("é", 1000))

	rs := recent.Records()
	if len(rs) != 3 {
		t.Fatalf("%d records", len(rs))
	}
	r := rs[2]
	var got []string
	for _, a := range r.Attrs {
		got = append(got, a.Key+"="+a.Value)
	}
	if strings.Join(got, " ") != "component=provisioner lease_id=l2 class=a100 provider=vast error=capacity" {
		t.Fatalf("kept attributes %v", got)
	}
	if r.Attr("lease_id") != "l2" || r.Attr("host_key") != "" {
		t.Fatalf("Attr: %q %q", r.Attr("lease_id"), r.Attr("host_key"))
	}
	if g := rs[1]; g.Attr("lease_id") != "" || g.Attr("component") != "provisioner" {
		t.Fatalf("grouped record kept %+v", g.Attrs)
	}
	long := rs[0]
	if len(long.Message) > 310 || !strings.HasSuffix(long.Message, "…") || len(long.Attr("error")) > 510 {
		t.Fatalf("long values not cut: %d, %d", len(long.Message), len(long.Attr("error")))
	}
	if !strings.HasSuffix(long.Attr("error"), "é…") {
		t.Fatal("a value was cut inside a character")
	}
	// The wrapped handler still gets the whole record.
	if !strings.Contains(out.String(), `"ssh_private_key":"-----BEGIN"`) {
		t.Fatal("the log lost an attribute")
	}
}

func TestRecentOfNilIsEmpty(t *testing.T) {
	var r *status.Recent
	if r.Records() != nil {
		t.Fatal("records of a nil Recent")
	}
}
