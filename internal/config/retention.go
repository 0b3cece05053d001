package config

import "time"

// DefaultRetention is how long deliveries and job events are kept.
const DefaultRetention = 30 * 24 * time.Hour

// DefaultHistory is how long released leases and completed jobs are kept.
const DefaultHistory = 90 * 24 * time.Hour

// MinRetention is the shortest retention accepted. The rows are what
// de-duplicates a redelivered webhook, and GitHub redelivers (by hand in
// the UI, or through the API, as the reconcile's deliveries sweep does)
// only deliveries of the past 3 days ("Redelivering webhooks",
// docs.github.com/en/webhooks/testing-and-troubleshooting-webhooks/redelivering-webhooks):
// a row younger than that may still be needed.
const MinRetention = 72 * time.Hour

// RetentionConfig says how long the database keeps the record of each
// webhook delivery and job event. The leader's reconcile prunes older rows.
type RetentionConfig struct {
	// Deliveries is the age past which deliveries (crabbox_delivery) and
	// job events (crabbox_job_event) are deleted; default 720h (30 days),
	// at least 72h; negative keeps them forever.
	Deliveries time.Duration `yaml:"deliveries"`
	// History is the age past which released leases (crabbox_lease, with
	// their crabbox_lease_event rows) and completed jobs (crabbox_job) are
	// deleted; default 2160h (90 days), at least 72h; negative keeps them.
	History time.Duration `yaml:"history"`
}

func (r RetentionConfig) validate() error {
	if d := r.Deliveries; d > 0 && d < MinRetention {
		return errf("retention.deliveries", "%s is shorter than %s: GitHub redelivers deliveries of the past 3 days, and these rows de-duplicate them", d, MinRetention)
	}
	// A completed job's row is what keeps a late queued delivery of that
	// job from renting a host, within the same 3 days.
	if d := r.History; d > 0 && d < MinRetention {
		return errf("retention.history", "%s is shorter than %s: a completed job's row keeps a late redelivery of it from renting a host", d, MinRetention)
	}
	return nil
}
