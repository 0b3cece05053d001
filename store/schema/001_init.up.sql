-- The first schema, written once for SQLite and PostgreSQL (see schema.go
-- for the template values). Timestamps are BIGINT microseconds since the Unix
-- epoch (0 = unset) on both, so the Go side reads them the same way.

-- Leases: one host leased for one job. The state column only changes
-- through the transitions of provisioner/lease.go, enforced by the store.
CREATE TABLE crabbox_lease (
    id               TEXT PRIMARY KEY,
    class            TEXT NOT NULL,
    scope_key        TEXT NOT NULL,
    scope_org        TEXT NOT NULL DEFAULT '',
    scope_repo       TEXT NOT NULL DEFAULT '',
    installation_id  BIGINT NOT NULL DEFAULT 0,
    state            TEXT NOT NULL,
    provider         TEXT NOT NULL DEFAULT '',
    offer_id         TEXT NOT NULL DEFAULT '',
    gpu              TEXT NOT NULL DEFAULT '',
    price_per_hour   DOUBLE PRECISION NOT NULL DEFAULT 0,
    region           TEXT NOT NULL DEFAULT '',
    instance_id      TEXT NOT NULL DEFAULT '',
    machine_id       TEXT NOT NULL DEFAULT '',
    ssh_host         TEXT NOT NULL DEFAULT '',
    ssh_port         INTEGER NOT NULL DEFAULT 0,
    ssh_user         TEXT NOT NULL DEFAULT '',
    host_key         TEXT NOT NULL DEFAULT '',
    runner_name      TEXT NOT NULL,
    runner_id        BIGINT NOT NULL DEFAULT 0,
    job_id           BIGINT NOT NULL DEFAULT 0,
    run_attempt      BIGINT NOT NULL DEFAULT 0,
    bound_job_id     BIGINT NOT NULL DEFAULT 0,
    release_reason   TEXT NOT NULL DEFAULT '',
    error            TEXT NOT NULL DEFAULT '',
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    state_changed_at BIGINT NOT NULL,
    boot_deadline    BIGINT NOT NULL DEFAULT 0,
    bootstrapped_at  BIGINT NOT NULL DEFAULT 0,
    expires_at       BIGINT NOT NULL DEFAULT 0,
    idle_since       BIGINT NOT NULL DEFAULT 0,
    busy_since       BIGINT NOT NULL DEFAULT 0,
    released_at      BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX crabbox_lease_runner_name ON crabbox_lease (runner_name);
CREATE INDEX crabbox_lease_demand ON crabbox_lease (class, scope_key, state);
CREATE INDEX crabbox_lease_state ON crabbox_lease (state);

-- A lease's history. Events written in the same microsecond keep their order
-- by a sequence: SQLite's implicit rowid, PostgreSQL's seq identity column
-- (the one dialect difference of this file; see schema.go).
CREATE TABLE crabbox_lease_event (
    {{- .EventSeqColumn}}
    lease_id   TEXT NOT NULL,
    at         BIGINT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX crabbox_lease_event_lease ON crabbox_lease_event (lease_id, at);

-- Workflow jobs that matched a class; status only moves forward.
CREATE TABLE crabbox_job (
    id              BIGINT NOT NULL,
    run_attempt     BIGINT NOT NULL,
    run_id          BIGINT NOT NULL DEFAULT 0,
    name            TEXT NOT NULL DEFAULT '',
    workflow_name   TEXT NOT NULL DEFAULT '',
    repo            TEXT NOT NULL DEFAULT '',
    scope_key       TEXT NOT NULL,
    scope_org       TEXT NOT NULL DEFAULT '',
    scope_repo      TEXT NOT NULL DEFAULT '',
    installation_id BIGINT NOT NULL DEFAULT 0,
    class           TEXT NOT NULL,
    labels          TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL,
    conclusion      TEXT NOT NULL DEFAULT '',
    runner_name     TEXT NOT NULL DEFAULT '',
    lease_id        TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (id, run_attempt)
);
CREATE INDEX crabbox_job_demand ON crabbox_job (class, scope_key, status);

-- Business-level de-duplication: one (job, attempt, action) is applied once.
CREATE TABLE crabbox_job_event (
    job_id      BIGINT NOT NULL,
    run_attempt BIGINT NOT NULL,
    action      TEXT NOT NULL,
    guid        TEXT NOT NULL DEFAULT '',
    received_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, run_attempt, action)
);

-- Transport-level de-duplication by X-GitHub-Delivery.
CREATE TABLE crabbox_delivery (
    guid        TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    action      TEXT NOT NULL DEFAULT '',
    received_at BIGINT NOT NULL
);
CREATE INDEX crabbox_delivery_received ON crabbox_delivery (received_at);
