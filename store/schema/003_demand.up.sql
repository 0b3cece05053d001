-- The balance asks, for one class in one scope, how many jobs are queued
-- and how many leases can still take one. Counting those rows costs as many
-- rows as there are, on every balance; on SQLite, which runs every write of
-- the server in turn, a burst of thousands of queued jobs made the counts
-- the largest cost of ingest. There crabbox_demand keeps both numbers,
-- moved by triggers on every insert, update and delete of a job or a lease,
-- so that nothing else has to remember to. (The triggers test for the row
-- before inserting it: INSERT OR IGNORE would not do, as a trigger's
-- statements take the conflict policy of the statement that fired them,
-- and PutJob's upsert has one.)
--
-- PostgreSQL counts instead (store/internal/sqlstore, Dialect.Demand): a
-- counter row would be updated by every delivery of the class and scope and
-- so make the deliveries' transactions wait for each other's commits, which
-- is what the balancer (provisioner/balancer.go) is there to avoid.
--
-- "Queued" is crabbox_job.status = 'queued'; "available" is a lease with
-- no release asked for, in a state of provisioner.State.Available. Both
-- must match the Go side; storetest checks the counts against a count.
{{if eq .Name "sqlite"}}
CREATE TABLE crabbox_demand (
    class     TEXT NOT NULL,
    scope_key TEXT NOT NULL,
    queued    BIGINT NOT NULL DEFAULT 0,
    available BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (class, scope_key)
);

INSERT INTO crabbox_demand (class, scope_key, queued, available)
SELECT class, scope_key, sum(q), sum(a) FROM (
    SELECT class, scope_key, 1 AS q, 0 AS a FROM crabbox_job WHERE status = 'queued'
    UNION ALL
    SELECT class, scope_key, 0, 1 FROM crabbox_lease
     WHERE release_reason = '' AND state IN ('pending', 'provisioning', 'booting', 'bootstrapping', 'idle')
) GROUP BY class, scope_key;

CREATE TRIGGER crabbox_job_demand_insert AFTER INSERT ON crabbox_job
WHEN NEW.status = 'queued'
BEGIN
    INSERT INTO crabbox_demand (class, scope_key) SELECT NEW.class, NEW.scope_key
     WHERE NOT EXISTS (SELECT 1 FROM crabbox_demand WHERE class = NEW.class AND scope_key = NEW.scope_key);
    UPDATE crabbox_demand SET queued = queued + 1 WHERE class = NEW.class AND scope_key = NEW.scope_key;
END;

CREATE TRIGGER crabbox_job_demand_update AFTER UPDATE OF status, class, scope_key ON crabbox_job
WHEN (OLD.status = 'queued') <> (NEW.status = 'queued')
  OR (NEW.status = 'queued' AND (OLD.class <> NEW.class OR OLD.scope_key <> NEW.scope_key))
BEGIN
    UPDATE crabbox_demand SET queued = queued - 1
     WHERE OLD.status = 'queued' AND class = OLD.class AND scope_key = OLD.scope_key;
    INSERT INTO crabbox_demand (class, scope_key) SELECT NEW.class, NEW.scope_key
     WHERE NEW.status = 'queued'
       AND NOT EXISTS (SELECT 1 FROM crabbox_demand WHERE class = NEW.class AND scope_key = NEW.scope_key);
    UPDATE crabbox_demand SET queued = queued + 1
     WHERE NEW.status = 'queued' AND class = NEW.class AND scope_key = NEW.scope_key;
END;

CREATE TRIGGER crabbox_job_demand_delete AFTER DELETE ON crabbox_job
WHEN OLD.status = 'queued'
BEGIN
    UPDATE crabbox_demand SET queued = queued - 1 WHERE class = OLD.class AND scope_key = OLD.scope_key;
END;

CREATE TRIGGER crabbox_lease_demand_insert AFTER INSERT ON crabbox_lease
WHEN NEW.release_reason = '' AND NEW.state IN ('pending', 'provisioning', 'booting', 'bootstrapping', 'idle')
BEGIN
    INSERT INTO crabbox_demand (class, scope_key) SELECT NEW.class, NEW.scope_key
     WHERE NOT EXISTS (SELECT 1 FROM crabbox_demand WHERE class = NEW.class AND scope_key = NEW.scope_key);
    UPDATE crabbox_demand SET available = available + 1 WHERE class = NEW.class AND scope_key = NEW.scope_key;
END;

CREATE TRIGGER crabbox_lease_demand_update AFTER UPDATE OF state, release_reason, class, scope_key ON crabbox_lease
WHEN (OLD.release_reason = '' AND OLD.state IN ('pending', 'provisioning', 'booting', 'bootstrapping', 'idle'))
  <> (NEW.release_reason = '' AND NEW.state IN ('pending', 'provisioning', 'booting', 'bootstrapping', 'idle'))
  OR OLD.class <> NEW.class OR OLD.scope_key <> NEW.scope_key
BEGIN
    UPDATE crabbox_demand SET available = available - 1
     WHERE OLD.release_reason = '' AND OLD.state IN ('pending', 'provisioning', 'booting', 'bootstrapping', 'idle')
       AND class = OLD.class AND scope_key = OLD.scope_key;
    INSERT INTO crabbox_demand (class, scope_key) SELECT NEW.class, NEW.scope_key
     WHERE NEW.release_reason = '' AND NEW.state IN ('pending', 'provisioning', 'booting', 'bootstrapping', 'idle')
       AND NOT EXISTS (SELECT 1 FROM crabbox_demand WHERE class = NEW.class AND scope_key = NEW.scope_key);
    UPDATE crabbox_demand SET available = available + 1
     WHERE NEW.release_reason = '' AND NEW.state IN ('pending', 'provisioning', 'booting', 'bootstrapping', 'idle')
       AND class = NEW.class AND scope_key = NEW.scope_key;
END;

CREATE TRIGGER crabbox_lease_demand_delete AFTER DELETE ON crabbox_lease
WHEN OLD.release_reason = '' AND OLD.state IN ('pending', 'provisioning', 'booting', 'bootstrapping', 'idle')
BEGIN
    UPDATE crabbox_demand SET available = available - 1 WHERE class = OLD.class AND scope_key = OLD.scope_key;
END;
{{end}}
