// Package webhook receives GitHub's workflow_job deliveries. It verifies the
// signature on the raw body before parsing anything, decodes the event,
// hands it to the provisioner (which records it and enqueues the work in one
// transaction) and answers at once: no cloud or GitHub call happens while
// GitHub waits for the response.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// DefaultMaxBody caps a delivery's body. workflow_job payloads are a few
// kilobytes; GitHub's own cap is 25 MB, which no event we use comes near.
const DefaultMaxBody = 1 << 20

// EventHandler records a workflow_job event; *provisioner.Provisioner is one.
type EventHandler interface {
	HandleJobEvent(ctx context.Context, ev provisioner.JobEvent) (provisioner.Outcome, error)
}

// Config configures the handler.
type Config struct {
	// Secret is the webhook secret; required (unsigned deliveries are refused).
	Secret []byte
	Events EventHandler
	// Ready reports whether the server can take work (for /readyz).
	Ready   func(ctx context.Context) error
	MaxBody int64
	Logger  *slog.Logger
	// Observe, when set, is told every delivery's event, action, result
	// and time to answer (metrics).
	Observe func(event, action, result string, d time.Duration)
}

// Handler serves POST /webhook, GET /healthz and GET /readyz.
type Handler struct {
	cfg Config
	mux *http.ServeMux
	log *slog.Logger
}

// New returns the handler. It refuses an empty secret: an unsigned webhook
// would let anyone on the internet rent GPUs on the operator's bill.
func New(cfg Config) (*Handler, error) {
	if len(cfg.Secret) == 0 {
		return nil, errors.New("webhook: a secret is required (CRABBOX_WEBHOOK_SECRET)")
	}
	if cfg.Events == nil {
		return nil, errors.New("webhook: an event handler is required")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger}
	h.mux.HandleFunc("POST /webhook", h.serveWebhook)
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, "ok")
	})
	h.mux.HandleFunc("GET /readyz", h.serveReady)
	return h, nil
}

// Handle adds another route (such as /metrics) to the handler's mux.
func (h *Handler) Handle(pattern string, handler http.Handler) { h.mux.Handle(pattern, handler) }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) serveReady(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := h.cfg.Ready(ctx); err != nil {
			h.log.Warn("not ready", "error", err)
			reply(w, http.StatusServiceUnavailable, "not ready")
			return
		}
	}
	reply(w, http.StatusOK, "ready")
}

func (h *Handler) serveWebhook(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	delivery := r.Header.Get("X-GitHub-Delivery")
	event := r.Header.Get("X-GitHub-Event")
	log := h.log.With("delivery_id", delivery, "event", event)
	action, result := "", ""
	defer func() {
		if h.cfg.Observe != nil {
			h.cfg.Observe(boundedEvent(event), action, result, time.Since(start))
		}
	}()

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			log.Warn("delivery refused: body too large", "limit", h.cfg.MaxBody)
			result = "too_large"
			reply(w, http.StatusRequestEntityTooLarge, "body too large")
			return
		}
		result = "malformed"
		reply(w, http.StatusBadRequest, "cannot read body")
		return
	}
	if !Verify(h.cfg.Secret, body, r.Header.Get("X-Hub-Signature-256")) {
		log.Warn("delivery refused: bad or missing signature", "remote", r.RemoteAddr)
		result = "unauthorized"
		reply(w, http.StatusUnauthorized, "bad or missing signature")
		return
	}

	switch event {
	case "ping":
		result = "ignored"
		reply(w, http.StatusOK, "pong")
		return
	case "workflow_job":
	case "":
		result = "malformed"
		reply(w, http.StatusBadRequest, "missing X-GitHub-Event")
		return
	default:
		result = "ignored"
		reply(w, http.StatusOK, "ignored event")
		return
	}

	payload, err := jsonPayload(r.Header.Get("Content-Type"), body)
	if err != nil {
		log.Warn("delivery refused: malformed", "error", err)
		result = "malformed"
		reply(w, http.StatusBadRequest, "malformed payload")
		return
	}
	ev, err := Decode(payload)
	if err != nil {
		log.Warn("delivery refused: malformed", "error", err)
		result = "malformed"
		reply(w, http.StatusBadRequest, err.Error())
		return
	}
	ev.DeliveryID = delivery
	ev.ReceivedAt = start
	action = boundedAction(ev.Action)
	log = log.With("action", ev.Action, "job_id", ev.JobID, "run_attempt", ev.RunAttempt)

	out, err := h.cfg.Events.HandleJobEvent(r.Context(), ev)
	if err != nil {
		// GitHub does not retry; a 500 shows in its delivery log and the
		// reconcile loop redelivers it.
		log.Error("recording delivery failed", "error", err)
		result = "error"
		reply(w, http.StatusInternalServerError, "could not record delivery")
		return
	}
	result = out.String()
	code := http.StatusOK
	if out == provisioner.Accepted {
		code = http.StatusAccepted
	}
	log.Info("delivery", "result", out.String(), "took", time.Since(start).Round(time.Microsecond))
	reply(w, code, out.String())
}

// boundedEvent and boundedAction keep metric labels to known values: the
// headers and payloads come from the internet.
func boundedEvent(e string) string {
	switch e {
	case "workflow_job", "ping":
		return e
	}
	return "other"
}

func boundedAction(a string) string {
	switch a {
	case "queued", "waiting", "in_progress", "completed":
		return a
	}
	return "other"
}

// Verify checks an X-Hub-Signature-256 header against the raw body in
// constant time. Only sha256 is accepted, and a missing header fails.
func Verify(secret, body []byte, header string) bool {
	const prefix = "sha256="
	if len(secret) == 0 || len(header) != len(prefix)+sha256.Size*2 || !strings.HasPrefix(header, prefix) {
		return false
	}
	got, err := hex.DecodeString(header[len(prefix):])
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

// Sign returns the X-Hub-Signature-256 value for body, as GitHub computes it.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// jsonPayload returns the JSON of a delivery, which hooks configured for
// form encoding send as payload=<urlencoded json>. The signature covers the
// whole body either way, so this runs after Verify.
func jsonPayload(contentType string, body []byte) ([]byte, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt != "application/x-www-form-urlencoded" {
		return body, nil
	}
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("form body: %w", err)
	}
	p := v.Get("payload")
	if p == "" {
		return nil, errors.New("form body without payload")
	}
	return []byte(p), nil
}

type wirePayload struct {
	Action      string `json:"action"`
	WorkflowJob *struct {
		ID           int64    `json:"id"`
		RunID        int64    `json:"run_id"`
		RunAttempt   int64    `json:"run_attempt"`
		Labels       []string `json:"labels"`
		Status       string   `json:"status"`
		Conclusion   *string  `json:"conclusion"`
		RunnerName   *string  `json:"runner_name"`
		Name         string   `json:"name"`
		WorkflowName *string  `json:"workflow_name"`
	} `json:"workflow_job"`
	Repository *struct {
		FullName string `json:"full_name"`
		// private is required by the schema, visibility optional
		// (default "public"; "internal" on enterprise orgs):
		// @octokit/openapi-webhooks components.schemas.repository-webhooks.
		Private    *bool  `json:"private"`
		Visibility string `json:"visibility"`
	} `json:"repository"`
	Organization *struct {
		Login string `json:"login"`
	} `json:"organization"`
	Installation *struct {
		ID int64 `json:"id"`
	} `json:"installation"`
}

// Decode parses a workflow_job payload into a provisioner event.
func Decode(payload []byte) (provisioner.JobEvent, error) {
	var p wirePayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return provisioner.JobEvent{}, fmt.Errorf("payload is not valid JSON: %w", err)
	}
	switch {
	case p.Action == "":
		return provisioner.JobEvent{}, errors.New("payload has no action")
	case p.WorkflowJob == nil:
		return provisioner.JobEvent{}, errors.New("payload has no workflow_job")
	case p.WorkflowJob.ID <= 0:
		return provisioner.JobEvent{}, errors.New("workflow_job has no id")
	case p.Repository == nil || p.Repository.FullName == "" || !strings.Contains(p.Repository.FullName, "/"):
		return provisioner.JobEvent{}, errors.New("payload has no repository.full_name")
	}
	j := p.WorkflowJob
	ev := provisioner.JobEvent{
		Action: p.Action, Status: j.Status, JobID: j.ID, RunID: j.RunID, RunAttempt: provisioner.RunAttempt(j.RunAttempt),
		Name: j.Name, Labels: j.Labels, Repo: p.Repository.FullName,
		RunnerName: deref(j.RunnerName), Conclusion: deref(j.Conclusion), Workflow: deref(j.WorkflowName),
	}
	ev.Visibility = provisioner.RepoVisibility(p.Repository.Visibility, p.Repository.Private)
	if p.Organization != nil {
		ev.Org = p.Organization.Login
	}
	if p.Installation != nil {
		ev.InstallationID = p.Installation.ID
	}
	return ev, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func reply(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, "{\"result\":%q}\n", msg)
}
