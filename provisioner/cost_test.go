package provisioner_test

import (
	"math"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

func TestCost(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 23, 0, 0, 0, time.UTC)
	events := []provisioner.Event{
		{At: t0, To: provisioner.StateProvisioning},
		{At: t0.Add(30 * time.Minute), To: provisioner.StateBooting},
	}
	running := &provisioner.Lease{InstanceID: "i-1", PricePerHour: 2, State: provisioner.StateBusy, CreatedAt: t0}
	released := &provisioner.Lease{InstanceID: "i-2", PricePerHour: 2, State: provisioner.StateReleased, CreatedAt: t0,
		ReleasedAt: t0.Add(90 * time.Minute)}
	noHost := &provisioner.Lease{PricePerHour: 2, State: provisioner.StateReleased, CreatedAt: t0, ReleasedAt: t0.Add(time.Hour)}
	now := t0.Add(3 * time.Hour)
	midnight := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		l          *provisioner.Lease
		events     []provisioner.Event
		start, end time.Time
		want       float64
	}{
		{"running bills from booting to now", running, events, time.Time{}, time.Time{}, 5},
		{"released bills until its release", released, events, time.Time{}, time.Time{}, 2},
		{"no booting event bills from creation", released, nil, time.Time{}, time.Time{}, 3},
		{"no host costs nothing", noHost, events, time.Time{}, time.Time{}, 0},
		{"today only", running, events, midnight, time.Time{}, 4},
		{"window before the host", running, events, t0, t0.Add(10 * time.Minute), 0},
	} {
		got := provisioner.CostBetween(tc.l, tc.events, now, tc.start, tc.end)
		if math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: cost %.4f, want %.4f", tc.name, got, tc.want)
		}
	}
	if got := provisioner.Cost(running, events, now); math.Abs(got-5) > 1e-9 {
		t.Errorf("Cost = %.4f, want 5", got)
	}
}
