-- Hedged provisioning (issue 18, provisioner/hedge.go): hedge_of is the id
-- of the lease a lease hedges ('' for an ordinary lease, and for a hedge
-- once it won); hedged_at, in microseconds like every time here (0: never),
-- is when a hedge was started for the lease, set once so that a lease is
-- hedged at most once. The partial index serves the two lookups by hedge_of
-- (a lease's hedge; the starting hedges the balance leaves out) and stays
-- as small as the few hedges live at a time.
ALTER TABLE crabbox_lease ADD COLUMN hedge_of TEXT NOT NULL DEFAULT '';
ALTER TABLE crabbox_lease ADD COLUMN hedged_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX crabbox_lease_hedge_of ON crabbox_lease (hedge_of) WHERE hedge_of <> '';
