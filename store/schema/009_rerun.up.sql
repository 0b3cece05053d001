-- rerun_lost_jobs (provisioner/rerun.go): when crabbox-runner decided to
-- re-run this attempt of a job lost with its host, and why. Set once, in the
-- transaction that enqueues the re-run, so that a redelivered webhook or a
-- restart never re-runs a job twice, and a later attempt of a job re-run
-- before is never re-run again (looked up by id, or by run and name when
-- GitHub gives the new attempt a new job id).
ALTER TABLE crabbox_job ADD COLUMN rerun_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE crabbox_job ADD COLUMN rerun_reason TEXT NOT NULL DEFAULT '';
CREATE INDEX crabbox_job_run ON crabbox_job (repo, run_id);
