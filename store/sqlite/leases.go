package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/crabbox/crabbox-runner/provisioner"
)

const leaseColumns = `id, class, scope_key, scope_org, scope_repo, installation_id, state, provider, offer_id,
	gpu, price_per_hour, region, instance_id, machine_id, ssh_host, ssh_port, ssh_user, host_key, runner_name, runner_id,
	job_id, run_attempt, bound_job_id, release_reason, error, attempts, created_at, updated_at,
	state_changed_at, boot_deadline, bootstrapped_at, expires_at, idle_since, busy_since, released_at`

func leaseArgs(l *provisioner.Lease) []any {
	return []any{l.ID, l.Class, l.Scope.Key(), l.Scope.Org, l.Scope.Repo, l.Scope.InstallationID, string(l.State),
		l.Provider, l.OfferID, l.GPU, l.PricePerHour, l.Region, l.InstanceID, l.MachineID, l.SSH.Host, l.SSH.Port, l.SSH.User,
		l.HostKey, l.RunnerName, l.RunnerID, l.JobID, l.RunAttempt, l.BoundJobID, l.ReleaseReason, l.Error,
		l.Attempts, micros(l.CreatedAt), micros(l.UpdatedAt), micros(l.StateChangedAt), micros(l.BootDeadline), micros(l.BootstrappedAt),
		micros(l.ExpiresAt), micros(l.IdleSince), micros(l.BusySince), micros(l.ReleasedAt)}
}

type scanner interface{ Scan(dest ...any) error }

func scanLease(row scanner) (*provisioner.Lease, error) {
	var l provisioner.Lease
	var scopeKey, state string
	var created, updated, changed, boot, bootstrapped, expires, idle, busy, released int64
	err := row.Scan(&l.ID, &l.Class, &scopeKey, &l.Scope.Org, &l.Scope.Repo, &l.Scope.InstallationID, &state,
		&l.Provider, &l.OfferID, &l.GPU, &l.PricePerHour, &l.Region, &l.InstanceID, &l.MachineID, &l.SSH.Host, &l.SSH.Port,
		&l.SSH.User, &l.HostKey, &l.RunnerName, &l.RunnerID, &l.JobID, &l.RunAttempt, &l.BoundJobID,
		&l.ReleaseReason, &l.Error, &l.Attempts, &created, &updated, &changed, &boot, &bootstrapped, &expires, &idle, &busy, &released)
	if err != nil {
		return nil, err
	}
	l.State = provisioner.State(state)
	l.CreatedAt, l.UpdatedAt, l.StateChangedAt = fromMicros(created), fromMicros(updated), fromMicros(changed)
	l.BootDeadline, l.BootstrappedAt, l.ExpiresAt = fromMicros(boot), fromMicros(bootstrapped), fromMicros(expires)
	l.IdleSince, l.BusySince, l.ReleasedAt = fromMicros(idle), fromMicros(busy), fromMicros(released)
	return &l, nil
}

func getLease(ctx context.Context, q querier, where string, args ...any) (*provisioner.Lease, error) {
	l, err := scanLease(q.QueryRowContext(ctx, `SELECT `+leaseColumns+` FROM crabbox_lease WHERE `+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("lease: %w", provisioner.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get lease: %w", err)
	}
	return l, nil
}

func listLeases(ctx context.Context, q querier, f provisioner.LeaseFilter) ([]*provisioner.Lease, error) {
	var where []string
	var args []any
	if len(f.States) > 0 {
		marks := make([]string, len(f.States))
		for i, s := range f.States {
			marks[i] = "?"
			args = append(args, string(s))
		}
		where = append(where, "state IN ("+strings.Join(marks, ",")+")")
	}
	for _, c := range []struct{ col, val string }{{"class", f.Class}, {"scope_key", f.ScopeKey}, {"provider", f.Provider}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	query := `SELECT ` + leaseColumns + ` FROM crabbox_lease`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY created_at, id"
	if f.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list leases: %w", err)
	}
	defer rows.Close()
	var out []*provisioner.Lease
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list leases: %w", err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

func (t *tx) InsertLease(ctx context.Context, l *provisioner.Lease) error {
	if !l.State.Valid() {
		return fmt.Errorf("sqlite: insert lease %s: invalid state %q", l.ID, l.State)
	}
	now := t.now()
	if l.CreatedAt.IsZero() {
		l.CreatedAt = now
	}
	l.UpdatedAt, l.StateChangedAt = now, now
	marks := strings.TrimSuffix(strings.Repeat("?, ", 35), ", ")
	if _, err := t.q.ExecContext(ctx, `INSERT INTO crabbox_lease (`+leaseColumns+`) VALUES (`+marks+`)`, leaseArgs(l)...); err != nil {
		return fmt.Errorf("sqlite: insert lease %s: %w", l.ID, err)
	}
	return t.event(ctx, l.ID, "", l.State, "created")
}

func (t *tx) Lease(ctx context.Context, id string) (*provisioner.Lease, error) {
	return getLease(ctx, t.q, "id = ?", id)
}

func (t *tx) LeaseByRunnerName(ctx context.Context, name string) (*provisioner.Lease, error) {
	return getLease(ctx, t.q, "runner_name = ?", name)
}

func (t *tx) Leases(ctx context.Context, f provisioner.LeaseFilter) ([]*provisioner.Lease, error) {
	return listLeases(ctx, t.q, f)
}

// Transition enforces the lifecycle table: the row is only written when the
// move is allowed from the state it holds now.
func (t *tx) Transition(ctx context.Context, id string, to provisioner.State, reason string, mut func(*provisioner.Lease)) (*provisioner.Lease, error) {
	l, err := t.Lease(ctx, id)
	if err != nil {
		return nil, err
	}
	from := l.State
	if !provisioner.CanTransition(from, to) {
		return l, &provisioner.TransitionError{LeaseID: id, From: from, To: to}
	}
	if mut != nil {
		mut(l)
	}
	l.State = to
	now := t.now()
	l.StateChangedAt = now
	if err := t.save(ctx, l, from); err != nil {
		return nil, err
	}
	return l, t.event(ctx, id, from, to, reason)
}

func (t *tx) UpdateLease(ctx context.Context, id string, mut func(*provisioner.Lease)) (*provisioner.Lease, error) {
	l, err := t.Lease(ctx, id)
	if err != nil {
		return nil, err
	}
	from := l.State
	mut(l)
	l.State = from // state changes only through Transition
	return l, t.save(ctx, l, from)
}

// save writes every column, guarded by the state read before, so a writer
// that raced us (possible on PostgreSQL without the row lock) is noticed.
func (t *tx) save(ctx context.Context, l *provisioner.Lease, from provisioner.State) error {
	l.UpdatedAt = t.now()
	cols := strings.Split(leaseColumns, ",")
	sets := make([]string, 0, len(cols)-1)
	for _, c := range cols[1:] {
		sets = append(sets, strings.TrimSpace(c)+" = ?")
	}
	args := append(leaseArgs(l)[1:], l.ID, string(from))
	res, err := t.q.ExecContext(ctx, `UPDATE crabbox_lease SET `+strings.Join(sets, ", ")+` WHERE id = ? AND state = ?`, args...)
	if err != nil {
		return fmt.Errorf("sqlite: save lease %s: %w", l.ID, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("sqlite: save lease %s: changed concurrently", l.ID)
	}
	return nil
}

func (t *tx) event(ctx context.Context, id string, from, to provisioner.State, reason string) error {
	_, err := t.q.ExecContext(ctx, `INSERT INTO crabbox_lease_event (lease_id, at, from_state, to_state, reason)
		VALUES (?, ?, ?, ?, ?)`, id, micros(t.now()), string(from), string(to), reason)
	if err != nil {
		return fmt.Errorf("sqlite: lease event: %w", err)
	}
	return nil
}
