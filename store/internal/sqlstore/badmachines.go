package sqlstore

import (
	"context"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// MarkBadMachine records a mark on a machine. A machine already bad keeps
// its first mark time and the later of the two ends, and counts one more
// mark; one whose last mark has run out (a row the retention pass has not
// deleted yet) starts over, as a machine marked for the first time.
// reason and lease_id are always the latest mark's. The CASEs are there
// because the databases spell "the larger of two" differently (MAX in
// SQLite, GREATEST in PostgreSQL).
func (t *Tx) MarkBadMachine(ctx context.Context, m provisioner.BadMachine) error {
	at := m.LastAt
	if at.IsZero() {
		at = t.now()
	}
	_, err := t.q.Exec(ctx, `INSERT INTO crabbox_bad_machine
		(provider, machine, until, reason, lease_id, first_at, last_at, marks)
		VALUES ($1, $2, $3, $4, $5, $6, $6, 1)
		ON CONFLICT (provider, machine) DO UPDATE SET
			marks = CASE WHEN crabbox_bad_machine.until <= excluded.last_at THEN 1
				ELSE crabbox_bad_machine.marks + 1 END,
			first_at = CASE WHEN crabbox_bad_machine.until <= excluded.last_at THEN excluded.first_at
				ELSE crabbox_bad_machine.first_at END,
			until = CASE WHEN crabbox_bad_machine.until <= excluded.last_at OR excluded.until > crabbox_bad_machine.until
				THEN excluded.until ELSE crabbox_bad_machine.until END,
			reason = excluded.reason,
			lease_id = excluded.lease_id,
			last_at = excluded.last_at`,
		m.Provider, m.Machine, Micros(m.Until), m.Reason, m.LeaseID, Micros(at))
	if err != nil {
		return t.d.errorf("mark bad machine %s/%s: %w", m.Provider, m.Machine, err)
	}
	return nil
}

// PruneBadMachines deletes at most limit bad-machine rows whose mark ran
// out before the given time, and says how many went.
func (t *Tx) PruneBadMachines(ctx context.Context, before time.Time, limit int) (int, error) {
	n, err := t.q.Exec(ctx, `DELETE FROM crabbox_bad_machine WHERE (provider, machine) IN (
		SELECT provider, machine FROM crabbox_bad_machine WHERE until < $1 ORDER BY until LIMIT $2)`,
		Micros(before), limit)
	if err != nil {
		return 0, t.d.errorf("prune bad machines: %w", err)
	}
	return int(n), nil
}

// BadMachines lists the machines still bad at now, by provider and machine.
func (r Reader) BadMachines(ctx context.Context, now time.Time) ([]provisioner.BadMachine, error) {
	rows, err := r.q.Query(ctx, `SELECT provider, machine, until, reason, lease_id, first_at, last_at, marks
		FROM crabbox_bad_machine WHERE until > $1 ORDER BY provider, machine`, Micros(now))
	if err != nil {
		return nil, r.d.errorf("bad machines: %w", err)
	}
	defer rows.Close()
	var out []provisioner.BadMachine
	for rows.Next() {
		var m provisioner.BadMachine
		var until, first, last int64
		if err := rows.Scan(&m.Provider, &m.Machine, &until, &m.Reason, &m.LeaseID, &first, &last, &m.Marks); err != nil {
			return nil, r.d.errorf("bad machines: %w", err)
		}
		m.Until, m.FirstAt, m.LastAt = FromMicros(until), FromMicros(first), FromMicros(last)
		out = append(out, m)
	}
	return out, rows.Err()
}
