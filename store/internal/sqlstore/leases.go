package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// leaseColumns lists every column of crabbox_lease, id first; leaseArgs and
// scanLease follow the same order.
var leaseColumns = []string{"id", "class", "scope_key", "scope_org", "scope_repo", "installation_id", "state",
	"provider", "offer_id", "gpu", "price_per_hour", "region", "instance_id", "machine_id", "ssh_host", "ssh_port",
	"ssh_user", "host_key", "runner_name", "runner_id", "job_id", "run_attempt", "bound_job_id", "release_reason",
	"error", "attempts", "created_at", "updated_at", "state_changed_at", "boot_deadline", "bootstrapped_at",
	"expires_at", "idle_since", "busy_since", "released_at", "queued_at", "gpu_count", "gpu_memory_gb", "gpu_check", "lost_reason", "interruptible", "hedge_of", "hedged_at", "warm", "promoted_from"}

var (
	selectLease     = `SELECT ` + strings.Join(leaseColumns, ", ") + ` FROM crabbox_lease`
	insertLeaseHead = `INSERT INTO crabbox_lease (` + strings.Join(leaseColumns, ", ") + `) VALUES `
)

func leaseArgs(l *provisioner.Lease) []any {
	return []any{l.ID, l.Class, l.Scope.Key(), l.Scope.Org, l.Scope.Repo, l.Scope.InstallationID, string(l.State),
		l.Provider, l.OfferID, l.GPU, l.PricePerHour, l.Region, l.InstanceID, l.MachineID, l.SSH.Host, l.SSH.Port, l.SSH.User,
		l.HostKey, l.RunnerName, l.RunnerID, l.JobID, l.RunAttempt, l.BoundJobID, l.ReleaseReason, l.Error,
		l.Attempts, Micros(l.CreatedAt), Micros(l.UpdatedAt), Micros(l.StateChangedAt), Micros(l.BootDeadline),
		Micros(l.BootstrappedAt), Micros(l.ExpiresAt), Micros(l.IdleSince), Micros(l.BusySince), Micros(l.ReleasedAt),
		Micros(l.QueuedAt), l.GPUCount, l.GPUMemoryGB, l.GPUCheck, l.LostReason, boolInt(l.Interruptible), l.HedgeOf, Micros(l.HedgedAt), boolInt(l.Warm), l.PromotedFrom}
}

// boolInt stores a flag as 0 or 1, read the same way by both databases.
func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func scanLease(row Row) (*provisioner.Lease, error) {
	var l provisioner.Lease
	var scopeKey, state string
	var created, updated, changed, boot, bootstrapped, expires, idle, busy, released, queued, interruptible, hedgedAt, warm int64
	err := row.Scan(&l.ID, &l.Class, &scopeKey, &l.Scope.Org, &l.Scope.Repo, &l.Scope.InstallationID, &state,
		&l.Provider, &l.OfferID, &l.GPU, &l.PricePerHour, &l.Region, &l.InstanceID, &l.MachineID, &l.SSH.Host, &l.SSH.Port,
		&l.SSH.User, &l.HostKey, &l.RunnerName, &l.RunnerID, &l.JobID, &l.RunAttempt, &l.BoundJobID,
		&l.ReleaseReason, &l.Error, &l.Attempts, &created, &updated, &changed, &boot, &bootstrapped, &expires, &idle, &busy, &released, &queued,
		&l.GPUCount, &l.GPUMemoryGB, &l.GPUCheck, &l.LostReason, &interruptible, &l.HedgeOf, &hedgedAt, &warm, &l.PromotedFrom)
	if err != nil {
		return nil, err
	}
	l.State = provisioner.State(state)
	l.CreatedAt, l.UpdatedAt, l.StateChangedAt = FromMicros(created), FromMicros(updated), FromMicros(changed)
	l.BootDeadline, l.BootstrappedAt, l.ExpiresAt = FromMicros(boot), FromMicros(bootstrapped), FromMicros(expires)
	l.IdleSince, l.BusySince, l.ReleasedAt = FromMicros(idle), FromMicros(busy), FromMicros(released)
	l.QueuedAt = FromMicros(queued)
	l.Interruptible = interruptible != 0
	l.HedgedAt = FromMicros(hedgedAt)
	l.Warm = warm != 0
	return &l, nil
}

// getLease reads the one lease matching where; lock is appended to the
// query (the dialect's LockRow inside a transaction, else empty).
func getLease(ctx context.Context, q Querier, d *Dialect, where, lock string, args ...any) (*provisioner.Lease, error) {
	l, err := scanLease(q.QueryRow(ctx, selectLease+` WHERE `+where+lock, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("lease: %w", provisioner.ErrNotFound)
	}
	if err != nil {
		return nil, d.errorf("get lease: %w", err)
	}
	return l, nil
}

// listLeases never locks: a listing is for deciding what to look at, and
// whoever then changes a lease reads it again through Tx.Lease.
func listLeases(ctx context.Context, q Querier, d *Dialect, f provisioner.LeaseFilter) ([]*provisioner.Lease, error) {
	var where []string
	var args []any
	if len(f.States) > 0 {
		for _, s := range f.States {
			args = append(args, string(s))
		}
		where = append(where, "state IN ("+marks(1, len(args))+")")
	}
	for _, c := range []struct{ col, val string }{{"class", f.Class}, {"scope_key", f.ScopeKey}, {"provider", f.Provider}} {
		if c.val != "" {
			args = append(args, c.val)
			where = append(where, fmt.Sprintf("%s = $%d", c.col, len(args)))
		}
	}
	if f.HedgeOf != "" {
		args = append(args, f.HedgeOf)
		// The second condition lets PostgreSQL use the partial index with
		// a parameter it cannot see when planning.
		where = append(where, fmt.Sprintf("hedge_of = $%d", len(args)), "hedge_of <> ''")
	}
	if f.Hedges {
		where = append(where, "hedge_of <> ''")
	}
	if !f.ReleasedSince.IsZero() {
		args = append(args, string(provisioner.StateReleased), Micros(f.ReleasedSince))
		where = append(where, fmt.Sprintf("(state <> $%d OR released_at >= $%d)", len(args)-1, len(args)))
	}
	query := selectLease
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY created_at, id"
	if f.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, d.errorf("list leases: %w", err)
	}
	defer rows.Close()
	var out []*provisioner.Lease
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, d.errorf("list leases: %w", err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// InsertLease stores a new lease and its first event.
func (t *Tx) InsertLease(ctx context.Context, l *provisioner.Lease) error {
	return t.InsertLeases(ctx, []*provisioner.Lease{l})
}

// leasesPerInsert keeps one statement's parameters under SQLite's limit
// (32,766) and PostgreSQL's (65,535).
const leasesPerInsert = 200

// InsertLeases inserts new leases and their "created" events, on
// PostgreSQL a statement each for many leases (see Dialect.MultiRowInsert).
func (t *Tx) InsertLeases(ctx context.Context, ls []*provisioner.Lease) error {
	now := t.now()
	for _, l := range ls {
		if !l.State.Valid() {
			return t.d.errorf("insert lease %s: invalid state %q", l.ID, l.State)
		}
		if l.CreatedAt.IsZero() {
			l.CreatedAt = now
		}
		l.UpdatedAt, l.StateChangedAt = now, now
	}
	per := leasesPerInsert
	if !t.d.MultiRowInsert {
		per = 1
	}
	for len(ls) > 0 {
		chunk := ls[:min(len(ls), per)]
		ls = ls[len(chunk):]
		var rows, events strings.Builder
		args := make([]any, 0, len(chunk)*len(leaseColumns))
		evArgs := make([]any, 0, len(chunk)*3+1)
		evArgs = append(evArgs, Micros(now))
		for i, l := range chunk {
			if i > 0 {
				rows.WriteString(", ")
				events.WriteString(", ")
			}
			rows.WriteString("(" + marks(len(args)+1, len(leaseColumns)) + ")")
			args = append(args, leaseArgs(l)...)
			fmt.Fprintf(&events, "($%d, $1, '', $%d, 'created')", len(evArgs)+1, len(evArgs)+2)
			evArgs = append(evArgs, l.ID, string(l.State))
		}
		if _, err := t.q.Exec(ctx, insertLeaseHead+rows.String(), args...); err != nil {
			return t.d.errorf("insert leases %s…: %w", chunk[0].ID, err)
		}
		if _, err := t.q.Exec(ctx, `INSERT INTO crabbox_lease_event (lease_id, at, from_state, to_state, reason) VALUES `+
			events.String(), evArgs...); err != nil {
			return t.d.errorf("lease events: %w", err)
		}
	}
	return nil
}

// Lease reads a lease and, on PostgreSQL, locks its row until the
// transaction ends.
func (t *Tx) Lease(ctx context.Context, id string) (*provisioner.Lease, error) {
	return getLease(ctx, t.q, t.d, "id = $1", t.d.LockRow, id)
}

// LeaseByRunnerName reads (and locks, as Lease) the lease of a runner.
func (t *Tx) LeaseByRunnerName(ctx context.Context, name string) (*provisioner.Lease, error) {
	return getLease(ctx, t.q, t.d, "runner_name = $1", t.d.LockRow, name)
}

// Leases lists leases without locking them.
func (t *Tx) Leases(ctx context.Context, f provisioner.LeaseFilter) ([]*provisioner.Lease, error) {
	return listLeases(ctx, t.q, t.d, f)
}

// Transition enforces the lifecycle table against the state the row holds
// once locked: a second transaction moving the same lease waits for the
// first and then judges its move from the state the first left.
func (t *Tx) Transition(ctx context.Context, id string, to provisioner.State, reason string, mut func(*provisioner.Lease)) (*provisioner.Lease, error) {
	l, err := t.Lease(ctx, id)
	if err != nil {
		return nil, err
	}
	from := l.State
	if !provisioner.CanTransition(from, to) {
		return l, &provisioner.TransitionError{LeaseID: id, From: from, To: to}
	}
	before := *l
	if mut != nil {
		mut(l)
	}
	l.State = to
	l.StateChangedAt = t.now()
	if err := t.save(ctx, l, &before); err != nil {
		return nil, err
	}
	return l, t.event(ctx, id, from, to, reason)
}

// UpdateLease applies mut to the lease; its state stays as it is.
func (t *Tx) UpdateLease(ctx context.Context, id string, mut func(*provisioner.Lease)) (*provisioner.Lease, error) {
	l, err := t.Lease(ctx, id)
	if err != nil {
		return nil, err
	}
	before := *l
	mut(l)
	l.State = before.State // state changes only through Transition
	return l, t.save(ctx, l, &before)
}

// save writes the columns that differ from the lease as read (before),
// guarded by the state read. Writing only those matters on SQLite, which
// updates every index holding a column named in SET, and runs the demand
// trigger when one of its columns is named, whether the value changed or
// not. With the row locked the guard always holds; it is the last line of
// defence should a lease ever be written without the lock.
func (t *Tx) save(ctx context.Context, l, before *provisioner.Lease) error {
	l.UpdatedAt = t.now()
	now, was := leaseArgs(l), leaseArgs(before)
	var set strings.Builder
	args := make([]any, 0, 8)
	for i := 1; i < len(now); i++ {
		// updated_at is always written, so that SET is never empty (a
		// frozen test clock leaves it unchanged).
		if now[i] == was[i] && leaseColumns[i] != "updated_at" {
			continue
		}
		args = append(args, now[i])
		if len(args) > 1 {
			set.WriteString(", ")
		}
		fmt.Fprintf(&set, "%s = $%d", leaseColumns[i], len(args))
	}
	args = append(args, l.ID, string(before.State))
	query := fmt.Sprintf(`UPDATE crabbox_lease SET %s WHERE id = $%d AND state = $%d`, set.String(), len(args)-1, len(args))
	n, err := t.q.Exec(ctx, query, args...)
	if err != nil {
		return t.d.errorf("save lease %s: %w", l.ID, err)
	}
	if n != 1 {
		return t.d.errorf("save lease %s: changed concurrently", l.ID)
	}
	return nil
}

// NoteLease records an event that changes nothing: the lease stays in its
// state (from and to are both its state) and the reason tells what happened.
func (t *Tx) NoteLease(ctx context.Context, id, reason string) error {
	l, err := getLease(ctx, t.q, t.d, `id = $1`, "", id)
	if err != nil {
		return err
	}
	return t.event(ctx, id, l.State, l.State, reason)
}

func (t *Tx) event(ctx context.Context, id string, from, to provisioner.State, reason string) error {
	_, err := t.q.Exec(ctx, `INSERT INTO crabbox_lease_event (lease_id, at, from_state, to_state, reason)
		VALUES ($1, $2, $3, $4, $5)`, id, Micros(t.now()), string(from), string(to), reason)
	if err != nil {
		return t.d.errorf("lease event: %w", err)
	}
	return nil
}
