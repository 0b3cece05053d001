-- Hosts lost under their lease (part preempt): why, set in the transaction
-- that asks for the release. rerun reads it to re-run the lost job.
ALTER TABLE crabbox_lease ADD COLUMN lost_reason TEXT NOT NULL DEFAULT '';
