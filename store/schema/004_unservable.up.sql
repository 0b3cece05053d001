-- Issue 13: a job can be marked unservable (refused by a class's policy, a
-- runner group that cannot serve its repository, or runners GitHub never
-- gave it) with a reason and a time; such a job gets no lease until the
-- mark is cleared. unservable_kind is the mark ('' = none), from the fixed
-- set of provisioner.UnservableKind; unservable_until ends a back-off mark
-- by itself (0 = until something changes); policy_hash is the class policy
-- (provisioner.PolicyHash) the mark was made under; unused_leases counts
-- the leases whose runner went unused while the job stayed queued;
-- visibility is the repository's as the delivery said ('' = unknown).
ALTER TABLE crabbox_job ADD COLUMN visibility TEXT NOT NULL DEFAULT '';
ALTER TABLE crabbox_job ADD COLUMN unservable_kind TEXT NOT NULL DEFAULT '';
ALTER TABLE crabbox_job ADD COLUMN unservable_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE crabbox_job ADD COLUMN unservable_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE crabbox_job ADD COLUMN unservable_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE crabbox_job ADD COLUMN policy_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE crabbox_job ADD COLUMN unused_leases INTEGER NOT NULL DEFAULT 0;

-- The status page, `leases` and reconcile read the marked jobs; few rows.
CREATE INDEX crabbox_job_unservable ON crabbox_job (unservable_at) WHERE unservable_kind <> '';

-- Demand is now a queued job with no mark. On SQLite the job triggers of
-- 003_demand are replaced by ones that also follow unservable_kind (every
-- existing row has none, so the counts kept stand as they are). PostgreSQL
-- counts with the same condition (sqlstore Demand).
{{if eq .Name "sqlite"}}
DROP TRIGGER crabbox_job_demand_insert;
DROP TRIGGER crabbox_job_demand_update;
DROP TRIGGER crabbox_job_demand_delete;

CREATE TRIGGER crabbox_job_demand_insert AFTER INSERT ON crabbox_job
WHEN NEW.status = 'queued' AND NEW.unservable_kind = ''
BEGIN
    INSERT INTO crabbox_demand (class, scope_key) SELECT NEW.class, NEW.scope_key
     WHERE NOT EXISTS (SELECT 1 FROM crabbox_demand WHERE class = NEW.class AND scope_key = NEW.scope_key);
    UPDATE crabbox_demand SET queued = queued + 1 WHERE class = NEW.class AND scope_key = NEW.scope_key;
END;

CREATE TRIGGER crabbox_job_demand_update AFTER UPDATE OF status, class, scope_key, unservable_kind ON crabbox_job
WHEN (OLD.status = 'queued' AND OLD.unservable_kind = '') <> (NEW.status = 'queued' AND NEW.unservable_kind = '')
  OR (NEW.status = 'queued' AND NEW.unservable_kind = '' AND (OLD.class <> NEW.class OR OLD.scope_key <> NEW.scope_key))
BEGIN
    UPDATE crabbox_demand SET queued = queued - 1
     WHERE OLD.status = 'queued' AND OLD.unservable_kind = '' AND class = OLD.class AND scope_key = OLD.scope_key;
    INSERT INTO crabbox_demand (class, scope_key) SELECT NEW.class, NEW.scope_key
     WHERE NEW.status = 'queued' AND NEW.unservable_kind = ''
       AND NOT EXISTS (SELECT 1 FROM crabbox_demand WHERE class = NEW.class AND scope_key = NEW.scope_key);
    UPDATE crabbox_demand SET queued = queued + 1
     WHERE NEW.status = 'queued' AND NEW.unservable_kind = '' AND class = NEW.class AND scope_key = NEW.scope_key;
END;

CREATE TRIGGER crabbox_job_demand_delete AFTER DELETE ON crabbox_job
WHEN OLD.status = 'queued' AND OLD.unservable_kind = ''
BEGIN
    UPDATE crabbox_demand SET queued = queued - 1 WHERE class = OLD.class AND scope_key = OLD.scope_key;
END;
{{end}}
