-- Bad machines (provisioner/badmachines.go): a machine whose host failed to
-- boot, refused its SSH endpoint or failed its GPU check is avoided until
-- `until`, by every replica and after a restart. One row per (provider,
-- machine); a later mark extends `until` and counts up `marks`, keeping
-- `first_at`. reason and lease_id are the latest mark's. Times are BIGINT
-- microseconds, as everywhere. Rows past `until` are deleted by the
-- leader's retention pass; the index on until serves that and the read of
-- the machines still bad.
CREATE TABLE crabbox_bad_machine (
    provider TEXT NOT NULL,
    machine  TEXT NOT NULL,
    until    BIGINT NOT NULL,
    reason   TEXT NOT NULL DEFAULT '',
    lease_id TEXT NOT NULL DEFAULT '',
    first_at BIGINT NOT NULL,
    last_at  BIGINT NOT NULL,
    marks    INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (provider, machine)
);
CREATE INDEX crabbox_bad_machine_until ON crabbox_bad_machine (until);
