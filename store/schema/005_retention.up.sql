-- Retention (provisioner/retention.go): each reconcile pass deletes the
-- oldest job events past retention.deliveries, a batch at a time. Without an
-- index on received_at that batch would read the whole table every pass;
-- crabbox_delivery has one already (crabbox_delivery_received).
CREATE INDEX crabbox_job_event_received ON crabbox_job_event (received_at);
