package status_test

import (
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// A hedge (issue 18) says in the lease table which lease it hedges; an
// ordinary lease says nothing of the kind.
func TestPageShowsHedge(t *testing.T) {
	s := seedStore(t)
	s.lease(t, &provisioner.Lease{ID: "l-hedge", Class: "a100", Scope: provisioner.Scope{Org: "acme"}, HedgeOf: "l-boot"},
		now.Add(-time.Minute))
	h := newHandler(t, s.st, "", recentWithRecords())
	_, body := get(t, h, nil)
	if r := row(t, body, "lease-l-hedge"); !strings.Contains(r, "hedge of l-boot") {
		t.Errorf("the hedge's row does not say whose hedge it is:\n%s", r)
	}
	if r := row(t, body, "lease-l-boot"); strings.Contains(r, "hedge of") {
		t.Errorf("an ordinary lease's row names a hedge:\n%s", r)
	}
}
