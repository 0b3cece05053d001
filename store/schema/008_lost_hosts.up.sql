-- Issue 17 (preempt): a lease whose host was lost while its runner was idle
-- or busy (outbid, preempted, stopped by the provider, failed, gone) says
-- why in lost_reason ('' = not lost), set in the transaction that asks for
-- its release; part rerun reads it to re-run the job. interruptible is 1
-- for a lease whose host is an interruptible (bid) instance.
ALTER TABLE crabbox_lease ADD COLUMN lost_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE crabbox_lease ADD COLUMN interruptible INTEGER NOT NULL DEFAULT 0;
