-- queued_at: when the delivery of the job a lease was made for arrived, so
-- that the queued → create phase counts the time before the lease existed
-- (leases are made by the balancer after the delivery's commit). 0 when the
-- lease was made for no particular job.
ALTER TABLE crabbox_lease ADD COLUMN queued_at BIGINT NOT NULL DEFAULT 0;

-- The balance counts a class's available leases in a scope; with the
-- release_reason test inside the index the count reads no table rows.
CREATE INDEX crabbox_lease_available ON crabbox_lease (class, scope_key, state) WHERE release_reason = '';

-- The balance makes each new lease for one of the newest queued jobs of the
-- class and scope that no lease was made for yet (Tx.NewestQueuedJobs):
-- these indexes find them in order of arrival (the first also serves the
-- counts of the index it replaces) and tell whether a lease has one.
CREATE INDEX crabbox_job_queued ON crabbox_job (class, scope_key, status, created_at);
DROP INDEX crabbox_job_demand;
CREATE INDEX crabbox_lease_job ON crabbox_lease (job_id, run_attempt);
