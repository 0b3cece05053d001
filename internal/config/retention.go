package config

import "time"

// DefaultRetention is how long deliveries and job events are kept.
const DefaultRetention = 30 * 24 * time.Hour

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
}

func (r RetentionConfig) validate() error {
	d := r.Deliveries
	if d < 0 {
		return nil // kept forever
	}
	if d > 0 && d < MinRetention {
		return errf("retention.deliveries", "%s is shorter than %s: GitHub redelivers deliveries of the past 3 days, and these rows de-duplicate them", d, MinRetention)
	}
	return nil
}
