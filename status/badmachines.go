package status

import (
	"context"
	"slices"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// Bad machines: the machines (on Lambda, an instance type in a region)
// avoided because a host there failed a lease (issue 17), as every replica
// reads them from the store.

// maxBadMachineRows bounds the section.
const maxBadMachineRows = 50

// BadMachineReader is the part of provisioner.Store the section reads; a
// Reader without it shows no section.
type BadMachineReader interface {
	BadMachines(ctx context.Context, now time.Time) ([]provisioner.BadMachine, error)
}

// badMachines fills the view's section: the marks not run out, those
// ending last first.
func (h *Handler) badMachines(ctx context.Context, v *view) error {
	r, ok := h.cfg.Store.(BadMachineReader)
	if !ok {
		return nil
	}
	v.BadShown = true
	marks, err := r.BadMachines(ctx, v.Now)
	if err != nil {
		return err
	}
	slices.SortStableFunc(marks, func(a, b provisioner.BadMachine) int { return b.Until.Compare(a.Until) })
	if len(marks) > maxBadMachineRows {
		v.BadMore, marks = true, marks[:maxBadMachineRows]
	}
	for _, m := range marks {
		m.Reason = cut(m.Reason, maxErrorLen)
		v.Bad = append(v.Bad, m)
	}
	return nil
}
