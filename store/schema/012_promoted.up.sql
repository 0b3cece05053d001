-- Hedged provisioning (issue 18, provisioner/hedge.go hedgeGone):
-- promoted_from is, on a hedge promoted to serve its job because the lease
-- it hedged failed, the id of that failed lease ('' otherwise). Once the
-- failed lease's host is destroyed, the promoted lease may be hedged in
-- turn: the link is how the release of the one finds the other. Looked up
-- among the few starting leases of a class, so no index.
ALTER TABLE crabbox_lease ADD COLUMN promoted_from TEXT NOT NULL DEFAULT '';
