// Package webhook receives GitHub's workflow_job deliveries. It bounds what
// a stranger can make it hold (bounded.go), verifies the signature on the
// raw body as it streams in, before parsing anything, decodes the event,
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
	Ready func(ctx context.Context) error
	// MaxBody caps a body (at most GitHubMaxPayload).
	MaxBody int64
	// MaxBuffered is the memory for bodies being read at once; requests
	// past it wait QueueWait, then get 503 (bounded.go).
	MaxBuffered int64
	// BodyTimeout bounds the time to receive a body; QueueWait the time
	// to wait for MaxBuffered. Zero means the defaults.
	BodyTimeout time.Duration
	QueueWait   time.Duration
	Logger      *slog.Logger
	// Observe, when set, is told every delivery's event, action, result
	// and time to answer (metrics).
	Observe func(event, action, result string, d time.Duration)
}

// Handler serves POST /webhook, GET /healthz and GET /readyz.
type Handler struct {
	cfg          Config
	mux          *http.ServeMux
	log          *slog.Logger
	small, large *budget
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
	if cfg.MaxBody > GitHubMaxPayload {
		return nil, fmt.Errorf("webhook: a body cap of %d bytes is above GitHub's payload cap of %d", cfg.MaxBody, GitHubMaxPayload)
	}
	if cfg.MaxBuffered <= 0 {
		cfg.MaxBuffered = max(DefaultMaxBuffered, cfg.MaxBody)
	}
	if cfg.MaxBuffered < cfg.MaxBody {
		return nil, fmt.Errorf("webhook: the read budget (%d bytes) is smaller than one body (%d bytes)", cfg.MaxBuffered, cfg.MaxBody)
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.QueueWait <= 0 {
		cfg.QueueWait = DefaultQueueWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// A quarter of the budget (at least one small body) is kept for
	// bodies of up to SmallBody, where GitHub's deliveries are.
	small := max(cfg.MaxBuffered/4, SmallBody)
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger,
		small: newBudget(small), large: newBudget(max(cfg.MaxBuffered-small, cfg.MaxBody))}
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
			// The error may name the database's address: logged, never
			// answered (anyone may call /readyz).
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

	// Nothing is read from a sender that cannot have signed the body, nor
	// from one whose declared body is over the cap.
	want, ok := parseSignature(r.Header.Get("X-Hub-Signature-256"))
	if !ok {
		log.Warn("delivery refused: missing or malformed signature", "remote", r.RemoteAddr)
		result = "unauthorized"
		closeAfter(w)
		reply(w, http.StatusUnauthorized, "bad or missing signature")
		return
	}
	if r.ContentLength > h.cfg.MaxBody {
		log.Warn("delivery refused: body too large", "limit", h.cfg.MaxBody, "content_length", r.ContentLength)
		result = "too_large"
		closeAfter(w)
		reply(w, http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	b, verified, err := h.readBody(w, r, want)
	switch {
	case errors.Is(err, errBusy):
		log.Warn("delivery refused: too many bodies being read", "remote", r.RemoteAddr)
		result = "busy"
		closeAfter(w)
		w.Header().Set("Retry-After", "1")
		reply(w, http.StatusServiceUnavailable, "busy")
		return
	case errors.Is(err, errTooLarge):
		log.Warn("delivery refused: body too large", "limit", h.cfg.MaxBody)
		result = "too_large"
		closeAfter(w)
		reply(w, http.StatusRequestEntityTooLarge, "body too large")
		return
	case err != nil:
		// Includes the body deadline passing: the connection is closed,
		// and this answer is for whoever still reads.
		result = "malformed"
		closeAfter(w)
		reply(w, http.StatusBadRequest, "cannot read body")
		return
	}
	defer b.release()
	if !verified {
		log.Warn("delivery refused: bad or missing signature", "remote", r.RemoteAddr)
		result = "unauthorized"
		reply(w, http.StatusUnauthorized, "bad or missing signature")
		return
	}
	body := b.Bytes()

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
		// The detail is for the log: answers stay generic, whoever signed.
		log.Warn("delivery refused: malformed", "error", err)
		result = "malformed"
		reply(w, http.StatusBadRequest, "malformed payload")
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
	got, ok := parseSignature(header)
	if len(secret) == 0 || !ok {
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

// closeAfter ends the connection after the answer: the body was not read
// (or not to its end), so the connection cannot carry another request.
func closeAfter(w http.ResponseWriter) { w.Header().Set("Connection", "close") }

func reply(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, "{\"result\":%q}\n", msg)
}
