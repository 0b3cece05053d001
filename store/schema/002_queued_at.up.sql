-- queued_at: when the delivery of the job a lease was made for arrived, so
-- that the queued → create phase counts the time before the lease existed
-- (leases are made by the balancer after the delivery's commit). 0 when the
-- lease was made for no particular job.
ALTER TABLE crabbox_lease ADD COLUMN queued_at BIGINT NOT NULL DEFAULT 0;

-- The balance counts a class's available leases in a scope; with the
-- release_reason test inside the index the count reads no table rows.
CREATE INDEX crabbox_lease_available ON crabbox_lease (class, scope_key, state) WHERE release_reason = '';
