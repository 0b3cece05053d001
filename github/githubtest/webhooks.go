package githubtest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Delivery is one webhook delivery: the event, and once sent, the answer.
type Delivery struct {
	// GUID is X-GitHub-Delivery: one per event, the same on redelivery.
	GUID       string
	Event      string // X-GitHub-Event: "workflow_job" or "ping"
	Action     string // the payload's action; empty for ping
	JobID      int64  // the workflow job, 0 for ping
	Body       []byte // the raw payload, signed as is; do not modify
	Redelivery bool

	// Set once sent.
	ID          int64  // this attempt's id in GET /app/hook/deliveries
	StatusCode  int    // the receiver's answer; 0 if none
	Error       string // why no answer came (no URL set, connection refused …)
	DeliveredAt time.Time
	Duration    time.Duration

	// Fixed when the event happens, as on GitHub, where a hook receives
	// the events that happen while it exists.
	url        string
	signature  string // X-Hub-Signature-256, empty without a secret
	targetType string // X-GitHub-Hook-Installation-Target-Type
	targetID   int64
}

func (d Delivery) String() string {
	s := d.Event
	if d.Action != "" {
		s += "." + d.Action
	}
	if d.JobID != 0 {
		s += fmt.Sprintf(" job %d", d.JobID)
	}
	s += " " + d.GUID
	if d.Redelivery {
		s += " (redelivery)"
	}
	switch {
	case d.Error != "":
		s += " failed: " + d.Error
	case d.StatusCode != 0:
		s += fmt.Sprintf(" -> %d", d.StatusCode)
	}
	return s
}

// Signature is the X-Hub-Signature-256 value for body under secret:
// "sha256=" and the lowercase hex HMAC-SHA256 (reference §1.4).
func Signature(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// SetWebhook sets where deliveries of later events go and the secret they
// are signed with. With an empty secret, deliveries carry no signature, as
// on GitHub. Events that happened before have no URL or keep the old one.
func (s *Server) SetWebhook(url string, secret []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hookURL = url
	s.hookSecret = slices.Clone(secret)
}

// HoldDeliveries(true) keeps new deliveries back instead of sending them;
// HoldDeliveries(false) sends everything held, in order, and resumes.
func (s *Server) HoldDeliveries(hold bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = hold
	if !hold {
		for _, d := range s.held {
			s.deliveries.push(d)
		}
		s.held = nil
	}
}

// ReleaseDeliveries takes the held deliveries, passes them to fn in the
// order they happened, and sends what fn returns in the order returned:
// a test can reorder, duplicate or drop them. A nil fn sends them as they
// are. Holding stays on until HoldDeliveries(false).
func (s *Server) ReleaseDeliveries(fn func([]Delivery) []Delivery) {
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.mu.Unlock()
	if fn != nil {
		held = fn(held)
	}
	for _, d := range held {
		s.deliveries.push(d)
	}
}

// Deliveries returns every delivery attempt so far, oldest first.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.records)
}

// WaitDeliveries waits until at least n delivery attempts were made and
// returns them all.
func (s *Server) WaitDeliveries(ctx context.Context, n int) ([]Delivery, error) {
	for {
		s.mu.Lock()
		if len(s.records) >= n {
			out := slices.Clone(s.records)
			s.mu.Unlock()
			return out, nil
		}
		have, changed := len(s.records), s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("githubtest: %d of %d deliveries made: %w", have, n, ctx.Err())
		}
	}
}

// Redeliver sends an earlier delivery again, with the same GUID and body,
// to the webhook as it is set now, as GitHub's redelivery does. Holding
// does not apply.
func (s *Server) Redeliver(guid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.records {
		if d.GUID == guid {
			d.Redelivery = true
			d.StatusCode, d.Error, d.DeliveredAt, d.Duration = 0, "", time.Time{}, 0
			s.addressLocked(&d)
			s.deliveries.push(d)
			return nil
		}
	}
	return fmt.Errorf("githubtest: no delivery %s was made", guid)
}

// Ping sends a ping event, as GitHub does when a hook is created.
func (s *Server) Ping() {
	s.mu.Lock()
	defer s.mu.Unlock()
	hookType := "Organization"
	if s.opts.AppID != 0 {
		hookType = "App"
	}
	body, _ := json.Marshal(map[string]any{
		"zen":     "Design for failure.",
		"hook_id": s.opts.HookID,
		"hook": map[string]any{
			"type":   hookType,
			"id":     s.opts.HookID,
			"name":   "web",
			"active": true,
			"events": []string{"workflow_job"},
			"config": map[string]string{"content_type": "json", "insecure_ssl": "0", "url": s.hookURL},
		},
	})
	s.enqueueLocked(Delivery{GUID: uuid.NewString(), Event: "ping", Body: body})
}

// addressLocked points d at the webhook as configured now and signs it.
func (s *Server) addressLocked(d *Delivery) {
	d.url, d.signature = s.hookURL, ""
	if len(s.hookSecret) > 0 {
		d.signature = Signature(s.hookSecret, d.Body)
	}
}

func (s *Server) enqueueLocked(d Delivery) {
	s.addressLocked(&d)
	if d.targetType == "" {
		d.targetType, d.targetID = "integration", s.opts.AppID
		if s.opts.AppID == 0 {
			d.targetType, d.targetID = "organization", 1
		}
	}
	if s.hold {
		s.held = append(s.held, d)
		return
	}
	s.deliveries.push(d)
}

// webhookLocked snapshots the job into a workflow_job payload and queues
// its delivery (reference §1.2).
func (s *Server) webhookLocked(j *Job, action string) {
	owner, name, _ := strings.Cut(j.Repo, "/")
	ownerType := "User"
	if j.Org != "" {
		ownerType = "Organization"
	}
	payload := map[string]any{
		"action":       action,
		"workflow_job": s.workflowJobLocked(j),
		"repository": map[string]any{
			"id":        s.idLocked(j.Repo),
			"node_id":   nodeID("R", s.idLocked(j.Repo)),
			"name":      name,
			"full_name": j.Repo,
			// repository.private is required, visibility optional in
			// @octokit/openapi-webhooks repository-webhooks; GitHub sends
			// both.
			"private":    s.repoVisibilityLocked(j.Repo) != RepoPublic,
			"visibility": s.repoVisibilityLocked(j.Repo),
			"html_url":   s.url + "/" + j.Repo,
			"owner":      map[string]any{"login": owner, "id": s.idLocked(owner), "type": ownerType},
		},
		"sender": map[string]any{"login": "crabbox-fake", "id": 1, "type": "User"},
	}
	if j.Org != "" {
		payload["organization"] = map[string]any{"login": j.Org, "id": s.idLocked(j.Org)}
	}
	if j.InstallationID != 0 {
		payload["installation"] = map[string]any{"id": j.InstallationID, "node_id": nodeID("I", j.InstallationID)}
	}
	body, err := json.Marshal(payload)
	if err != nil {
		panic(fmt.Sprintf("githubtest: encode webhook: %v", err)) // plain maps and strings
	}
	d := Delivery{GUID: uuid.NewString(), Event: "workflow_job", Action: action, JobID: j.ID, Body: body}
	switch {
	case s.opts.AppID != 0:
		d.targetType, d.targetID = "integration", s.opts.AppID
	case j.Org != "":
		d.targetType, d.targetID = "organization", s.idLocked(j.Org)
	default:
		d.targetType, d.targetID = "repository", s.idLocked(j.Repo)
	}
	s.enqueueLocked(d)
}

// workflowJobJSON is the workflow_job object of webhooks and of the REST
// job endpoint; nullable fields are pointers.
type workflowJobJSON struct {
	ID              int64    `json:"id"`
	RunID           int64    `json:"run_id"`
	RunAttempt      *int64   `json:"run_attempt,omitempty"` // nil only in REST answers, see Options.RESTOmitsRunAttempt
	NodeID          string   `json:"node_id"`
	HeadBranch      string   `json:"head_branch"`
	HeadSHA         string   `json:"head_sha"`
	URL             string   `json:"url"`
	HTMLURL         string   `json:"html_url"`
	RunURL          string   `json:"run_url"`
	Status          string   `json:"status"`
	Conclusion      *string  `json:"conclusion"`
	CreatedAt       string   `json:"created_at"`
	StartedAt       string   `json:"started_at"`
	CompletedAt     *string  `json:"completed_at"`
	Name            string   `json:"name"`
	WorkflowName    string   `json:"workflow_name"`
	Steps           []any    `json:"steps"`
	Labels          []string `json:"labels"`
	RunnerID        *int64   `json:"runner_id"`
	RunnerName      *string  `json:"runner_name"`
	RunnerGroupID   *int64   `json:"runner_group_id"`
	RunnerGroupName *string  `json:"runner_group_name"`
}

func (s *Server) workflowJobLocked(j *Job) workflowJobJSON {
	api := s.url + "/repos/" + j.Repo + "/actions"
	out := workflowJobJSON{
		ID:           j.ID,
		RunID:        j.RunID,
		RunAttempt:   ptr(j.RunAttempt),
		NodeID:       nodeID("CR", j.ID),
		HeadBranch:   j.HeadBranch,
		HeadSHA:      j.HeadSHA,
		URL:          api + "/jobs/" + strconv.FormatInt(j.ID, 10),
		HTMLURL:      fmt.Sprintf("%s/%s/actions/runs/%d/job/%d", s.url, j.Repo, j.RunID, j.ID),
		RunURL:       api + "/runs/" + strconv.FormatInt(j.RunID, 10),
		Status:       j.Status,
		CreatedAt:    j.CreatedAt.Format(time.RFC3339),
		StartedAt:    j.StartedAt.Format(time.RFC3339),
		Name:         j.Name,
		WorkflowName: j.WorkflowName,
		Steps:        []any{},
		Labels:       slices.Clone(j.Labels),
	}
	if j.Status == StatusCompleted {
		c, at := j.Conclusion, j.CompletedAt.Format(time.RFC3339)
		out.Conclusion, out.CompletedAt = &c, &at
	}
	if j.RunnerID != 0 {
		id, name, gid, gname := j.RunnerID, j.RunnerName, j.RunnerGroupID, j.RunnerGroupName
		out.RunnerID, out.RunnerName, out.RunnerGroupID, out.RunnerGroupName = &id, &name, &gid, &gname
	}
	return out
}

// idLocked gives each repo, org or user a stable numeric id.
func (s *Server) idLocked(name string) int64 {
	k := strings.ToLower(name)
	id, ok := s.repoIDs[k]
	if !ok {
		id = s.nextRepoID
		s.nextRepoID++
		s.repoIDs[k] = id
	}
	return id
}

func nodeID(prefix string, id int64) string {
	return prefix + "_" + base64.RawStdEncoding.EncodeToString([]byte(strconv.FormatInt(id, 10)))
}

// send POSTs one delivery and records the outcome. It runs on the
// delivery goroutine only, so deliveries go out one at a time, in order.
func (s *Server) send(d Delivery) {
	d.DeliveredAt = time.Now()
	switch {
	case d.url == "":
		d.Error = "no webhook URL set"
	case s.dropped(d):
		d.Error = errDropped
	default:
		d.StatusCode, d.Error = s.post(d)
	}
	d.Duration = time.Since(d.DeliveredAt)

	detail := d.Event
	if d.Action != "" {
		detail += "." + d.Action
	}
	if d.Redelivery {
		detail += " (redelivery)"
	}
	s.mu.Lock()
	d.ID = s.deliveryIDLocked()
	s.records = append(s.records, d)
	s.emitLocked(Event{Kind: EventWebhookDelivered, JobID: d.JobID, Detail: detail, StatusCode: d.StatusCode, Error: d.Error})
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *Server) post(d Delivery) (int, string) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, d.url, bytes.NewReader(d.Body))
	if err != nil {
		return 0, "bad webhook URL"
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "GitHub-Hookshot/fake")
	h.Set("X-GitHub-Event", d.Event)
	h.Set("X-GitHub-Delivery", d.GUID)
	h.Set("X-GitHub-Hook-ID", strconv.FormatInt(s.opts.HookID, 10))
	if d.targetType != "" {
		h.Set("X-GitHub-Hook-Installation-Target-Type", d.targetType)
		h.Set("X-GitHub-Hook-Installation-Target-ID", strconv.FormatInt(d.targetID, 10))
	}
	if d.signature != "" {
		h.Set("X-Hub-Signature-256", d.signature)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode, ""
}

// ptr copies v, so that a body marshalled after the lock is released does
// not read the job it was made from.
func ptr[T any](v T) *T { return &v }
