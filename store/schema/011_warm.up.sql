-- Issue 18 (warm hosts): warm is 1 for a lease made to keep a class's
-- min_idle hosts booted ahead of demand rather than for a job; it stays 1
-- once its runner takes a job, for the record (metrics, `leases`).
ALTER TABLE crabbox_lease ADD COLUMN warm INTEGER NOT NULL DEFAULT 0;
-- The newest job of a class names the scope its warm hosts register in;
-- looked up at each balance of a class with min_idle.
CREATE INDEX crabbox_job_class_newest ON crabbox_job (class, created_at);
