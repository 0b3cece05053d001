-- The GPU gate (provisioner/gpugate.go): a lease keeps its offer's GPU
-- count and memory per GPU (nominal GB), what the host is held to, and the
-- gate's verdict ("passed: …" or "<rule>: found …, wanted …"), for `leases`
-- and the status page.
ALTER TABLE crabbox_lease ADD COLUMN gpu_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE crabbox_lease ADD COLUMN gpu_memory_gb DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE crabbox_lease ADD COLUMN gpu_check TEXT NOT NULL DEFAULT '';
