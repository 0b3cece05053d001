package config

// GitHub caps a webhook payload at 25 MB: "Payloads are capped at 25 MB.
// If an event generates a larger payload, GitHub will not deliver a payload
// for that webhook event." (docs.github.com, "Webhook events and payloads").
// A larger body cap could only ever admit bodies GitHub did not send.
const (
	maxWebhookBody = 25 << 20 // 26214400, webhook.GitHubMaxPayload
	// The body budget's ceiling: a figure far past anything a server
	// taking workflow_job deliveries needs, so that a typo is refused.
	maxWebhookBuffered = 1 << 30
	// Defaults, as webhook.New applies them to zero values.
	defaultWebhookBody     = 1 << 20
	defaultWebhookBuffered = 16 << 20
)

// validate checks the webhook's bounds; zero means the default.
func (w WebhookConfig) validate() error {
	if w.MaxBodyBytes < 0 || w.MaxBodyBytes > maxWebhookBody {
		return errf("webhook.max_body_bytes", "must be 1..%d bytes (GitHub caps payloads at 25 MB; default %d), not %d",
			maxWebhookBody, defaultWebhookBody, w.MaxBodyBytes)
	}
	if w.MaxBufferedBytes < 0 || w.MaxBufferedBytes > maxWebhookBuffered {
		return errf("webhook.max_buffered_bytes", "must be at most %d bytes (default %d), not %d",
			maxWebhookBuffered, defaultWebhookBuffered, w.MaxBufferedBytes)
	}
	body := w.MaxBodyBytes
	if body == 0 {
		body = defaultWebhookBody
	}
	if w.MaxBufferedBytes > 0 && w.MaxBufferedBytes < body {
		return errf("webhook.max_buffered_bytes", "must hold at least one body of webhook.max_body_bytes (%d), not %d",
			body, w.MaxBufferedBytes)
	}
	return nil
}
