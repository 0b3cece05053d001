package githubtest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// runner is a registered self-hosted runner.
type runner struct {
	id         int64
	name       string
	scope      scope
	groupID    int64
	labels     []string // custom labels, as asked for
	defaults   []string // read-only default labels (jitDefaultLabels)
	workFolder string
	token      string // the runner's credential for /_fake/runner/

	lastSeen       time.Time // last poll; zero until it connects
	reportedOnline bool      // an online event was sent and no offline since
	jobID          int64     // the job it took, 0 while idle
}

// Runner is a snapshot of a registered runner, as the fake sees it.
type Runner struct {
	ID      int64
	Name    string
	Org     string // org scope, or empty
	Repo    string // repo scope "owner/name", or empty
	GroupID int64
	Labels  []string // the custom labels it was registered with
	// DefaultLabels are the read-only labels the fake added (see
	// jitDefaultLabels); a job may ask for them too.
	DefaultLabels []string
	Status        string // "online" or "offline"
	Busy          bool
	JobID         int64 // the job it took, 0 while idle
	// LastSeen is the runner's last poll; zero if it never connected.
	LastSeen time.Time
}

// Registered returns the name of every runner ever registered through
// generate-jitconfig, in order, removed ones included: a test can tell
// that no runner was ever registered for a host.
func (s *Server) Registered() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.registered)
}

// Runners returns the registered runners, by id. Runners that were
// deleted, or that ran their one job, are gone.
func (s *Server) Runners() []Runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	out := make([]Runner, 0, len(s.runners))
	for _, id := range sortedKeys(s.runners) {
		rn := s.runners[id]
		out = append(out, Runner{
			ID:            rn.id,
			Name:          rn.name,
			Org:           rn.scope.org,
			Repo:          rn.scope.repo,
			GroupID:       rn.groupID,
			Labels:        slices.Clone(rn.labels),
			DefaultLabels: slices.Clone(rn.defaults),
			Status:        s.statusLocked(rn, now),
			Busy:          s.busyLocked(rn),
			JobID:         rn.jobID,
			LastSeen:      rn.lastSeen,
		})
	}
	return out
}

func (s *Server) onlineLocked(rn *runner, now time.Time) bool {
	return !rn.lastSeen.IsZero() && now.Sub(rn.lastSeen) <= s.opts.OnlineTimeout
}

func (s *Server) statusLocked(rn *runner, now time.Time) string {
	if s.onlineLocked(rn, now) {
		return "online"
	}
	return "offline"
}

func (s *Server) busyLocked(rn *runner) bool {
	j := s.jobs[rn.jobID]
	return j != nil && j.Status == StatusInProgress
}

// runnerJSON is the REST runner object (reference §3.3).
type runnerJSON struct {
	ID            int64       `json:"id"`
	Name          string      `json:"name"`
	OS            string      `json:"os"`
	Status        string      `json:"status"`
	Busy          bool        `json:"busy"`
	Labels        []labelJSON `json:"labels"`
	RunnerGroupID int64       `json:"runner_group_id"`
	Ephemeral     bool        `json:"ephemeral"`
}

type labelJSON struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

func (s *Server) runnerJSONLocked(rn *runner, now time.Time) runnerJSON {
	osName := "unknown" // what GitHub reports until the runner connects
	if !rn.lastSeen.IsZero() {
		osName = "Linux"
	}
	labels := make([]labelJSON, 0, len(rn.defaults)+len(rn.labels))
	for _, l := range rn.defaults {
		// reference §3.3: "read-only (set automatically at configuration)".
		labels = append(labels, labelJSON{ID: s.labelIDLocked(l), Name: l, Type: "read-only"})
	}
	for _, l := range rn.allLabels()[len(rn.defaults):] {
		labels = append(labels, labelJSON{ID: s.labelIDLocked(l), Name: l, Type: "custom"})
	}
	return runnerJSON{
		ID:            rn.id,
		Name:          rn.name,
		OS:            osName,
		Status:        s.statusLocked(rn, now),
		Busy:          s.busyLocked(rn),
		Labels:        labels,
		RunnerGroupID: rn.groupID,
		Ephemeral:     true,
	}
}

func (s *Server) labelIDLocked(name string) int64 {
	k := strings.ToLower(name)
	id, ok := s.labelIDs[k]
	if !ok {
		id = s.nextLabelID
		s.nextLabelID++
		s.labelIDs[k] = id
	}
	return id
}

// handleGenerateJIT: POST …/actions/runners/generate-jitconfig (§3.2).
func (s *Server) handleGenerateJIT(w http.ResponseWriter, r *http.Request, sc scope) {
	var body map[string]json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil || body == nil {
		writeError(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	var (
		name       string
		groupID    int64
		labels     []string
		workFolder = "_work"
	)
	if msg := decodeField(body, "name", true, &name); msg != "" {
		writeError(w, http.StatusUnprocessableEntity, msg)
		return
	}
	if msg := decodeField(body, "runner_group_id", true, &groupID); msg != "" {
		writeError(w, http.StatusUnprocessableEntity, msg)
		return
	}
	if msg := decodeField(body, "labels", true, &labels); msg != "" {
		writeError(w, http.StatusUnprocessableEntity, msg)
		return
	}
	if msg := decodeField(body, "work_folder", false, &workFolder); msg != "" {
		writeError(w, http.StatusUnprocessableEntity, msg)
		return
	}
	switch {
	case strings.TrimSpace(name) == "":
		writeError(w, http.StatusUnprocessableEntity, "Invalid request.\n\nName must not be empty.")
		return
	case len(labels) < 1:
		writeError(w, http.StatusUnprocessableEntity, "Invalid request.\n\nFor 'properties/labels', [] should have at least 1 item(s).")
		return
	case len(labels) > 100:
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("Invalid request.\n\nFor 'properties/labels', %d items is more than the maximum of 100.", len(labels)))
		return
	case slices.ContainsFunc(labels, func(l string) bool { return strings.TrimSpace(l) == "" }):
		writeError(w, http.StatusUnprocessableEntity, "Invalid request.\n\nLabel names must not be empty.")
		return
	}

	s.mu.Lock()
	if s.groupLocked(sc.owner(), groupID) == nil {
		// OpenAPI actions/generate-runner-jitconfig-for-org documents 404
		// (not_found) besides 409 and 422; a group the org does not have
		// is "not found" (reference §3.2).
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	for _, other := range s.runners {
		if other.scope.key() == sc.key() && strings.EqualFold(other.name, name) {
			s.mu.Unlock()
			writeError(w, http.StatusConflict, fmt.Sprintf("Already exists - A runner with the name %s already exists.", name))
			return
		}
	}
	rn := &runner{
		id:         s.nextRunnerID,
		name:       name,
		scope:      sc,
		groupID:    groupID,
		labels:     slices.Clone(labels),
		workFolder: workFolder,
		defaults:   s.jitDefaultLabels(labels),
		token:      randomHex(20),
	}
	s.nextRunnerID++
	s.runners[rn.id] = rn
	s.registered = append(s.registered, name)
	encoded, err := s.encodeJITConfig(rn)
	if err != nil {
		delete(s.runners, rn.id)
		s.mu.Unlock()
		writeError(w, http.StatusInternalServerError, "fake: encoding the JIT config failed")
		return
	}
	s.emitLocked(Event{Kind: EventRunnerRegistered, RunnerID: rn.id, RunnerName: rn.name, Scope: sc.String(),
		Detail: "labels " + strings.Join(rn.allLabels(), ",")})
	s.notifyLocked()
	resp := map[string]any{
		"runner":             s.runnerJSONLocked(rn, time.Now()),
		"encoded_jit_config": encoded,
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, resp)
}

// jitDefaultLabels are the read-only labels GitHub gives a runner besides
// its custom ones: self-hosted, the OS and the architecture (reference §4.4;
// runner@HEAD src/Runner.Listener/Configuration/ConfigurationManager.cs adds
// them at config.sh time unless --no-default-labels). Whether a JIT runner
// gets them is disputed (reference §8 item 1):
// CloudSnorkel/cdk-github-runners#906 says only the given labels are
// registered, a comment in github-aws-runners/terraform-aws-github-runner
// #3491 says the defaults were added. The fake adds them unless
// Options.NoJITDefaultLabels: that is the stricter case for a provisioner,
// whose runner can then take a plain `runs-on: [self-hosted, linux]` job
// not meant for it. GitHub cannot know the host's architecture when the
// config is generated, so the fake takes it from a custom label naming one
// (arm64, arm) and X64 otherwise.
func (s *Server) jitDefaultLabels(custom []string) []string {
	if s.opts.NoJITDefaultLabels {
		return nil
	}
	arch := "X64"
	for _, l := range custom {
		switch strings.ToLower(l) {
		case "arm64", "aarch64":
			arch = "ARM64"
		case "arm":
			arch = "ARM"
		}
	}
	return []string{"self-hosted", "Linux", arch}
}

// allLabels are the runner's labels: read-only defaults, then custom ones
// not already among them.
func (rn *runner) allLabels() []string {
	out := slices.Clone(rn.defaults)
	for _, l := range rn.labels {
		if !slices.ContainsFunc(out, func(have string) bool { return strings.EqualFold(have, l) }) {
			out = append(out, l)
		}
	}
	return out
}

// groupNameLocked is the name of the runner's group, or "" once the group
// is gone.
func (s *Server) groupNameLocked(rn *runner) string {
	if g := s.groupLocked(rn.scope.owner(), rn.groupID); g != nil {
		return g.Name
	}
	return ""
}

// decodeField decodes body[key] into dst and returns GitHub's validation
// message when it is missing (and required) or of the wrong type.
func decodeField(body map[string]json.RawMessage, key string, required bool, dst any) string {
	raw, ok := body[key]
	if !ok || string(raw) == "null" {
		if required {
			return fmt.Sprintf("Invalid request.\n\n%q wasn't supplied.", key)
		}
		return ""
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Sprintf("Invalid request.\n\nFor 'properties/%s', %s is not of the expected type.", key, raw)
	}
	return ""
}

// encodeJITConfig builds encoded_jit_config: base64 of a JSON object that
// maps the runner's config file names to their base64 contents (§3.2).
func (s *Server) encodeJITConfig(rn *runner) (string, error) {
	ghURL := s.url + "/" + rn.scope.org
	if rn.scope.repo != "" {
		ghURL = s.url + "/" + rn.scope.repo
	}
	dotRunner, err := json.Marshal(map[string]any{
		"agentId":    rn.id,
		"agentName":  rn.name,
		"poolId":     rn.groupID,
		"poolName":   s.groupNameLocked(rn),
		"serverUrl":  s.url,
		"gitHubUrl":  ghURL,
		"workFolder": rn.workFolder,
		"ephemeral":  true,
	})
	if err != nil {
		return "", err
	}
	creds, err := json.Marshal(map[string]any{
		"scheme": "OAuth",
		"data": map[string]string{
			"clientId":                uuid.NewString(),
			"authorizationUrl":        s.url + "/_fake/oauth2/token",
			"requireFipsCryptography": "False",
			"token":                   rn.token,
		},
	})
	if err != nil {
		return "", err
	}
	// Shaped like the real file (an RSA key's parameters); the fake
	// protocol never uses it, so random bytes will do.
	rsaParams := map[string]string{"exponent": "AQAB"}
	for _, k := range []string{"d", "dp", "dq", "inverseQ", "modulus", "p", "q"} {
		rsaParams[k] = base64.StdEncoding.EncodeToString(randomBytes(64))
	}
	rsaJSON, err := json.Marshal(rsaParams)
	if err != nil {
		return "", err
	}
	files, err := json.Marshal(map[string]string{
		".runner":                base64.StdEncoding.EncodeToString(dotRunner),
		".credentials":           base64.StdEncoding.EncodeToString(creds),
		".credentials_rsaparams": base64.StdEncoding.EncodeToString(rsaJSON),
	})
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(files), nil
}

// handleListRunners: GET …/actions/runners?name=&per_page=&page=.
func (s *Server) handleListRunners(w http.ResponseWriter, r *http.Request, sc scope) {
	q := r.URL.Query()
	perPage := 30
	if v, err := strconv.Atoi(q.Get("per_page")); err == nil && v > 0 {
		perPage = min(v, 100)
	}
	page := 1
	if v, err := strconv.Atoi(q.Get("page")); err == nil && v > 0 {
		page = v
	}
	name := q.Get("name")

	s.mu.Lock()
	now := time.Now()
	var all []runnerJSON
	for _, id := range sortedKeys(s.runners) {
		rn := s.runners[id]
		if rn.scope.key() != sc.key() || (name != "" && !strings.EqualFold(rn.name, name)) {
			continue
		}
		all = append(all, s.runnerJSONLocked(rn, now))
	}
	s.mu.Unlock()

	pageRunners := []runnerJSON{}
	if start := (page - 1) * perPage; start < len(all) {
		pageRunners = all[start:min(start+perPage, len(all))]
	}
	lastPage := max((len(all)+perPage-1)/perPage, 1)
	if link := linkHeader(s.url, r.URL, page, lastPage, perPage); link != "" {
		w.Header().Set("Link", link)
	}
	writeJSON(w, http.StatusOK, map[string]any{"total_count": len(all), "runners": pageRunners})
}

// linkHeader builds GitHub's pagination header: next/last after the
// current page, first/prev before it.
func linkHeader(base string, u *url.URL, page, lastPage, perPage int) string {
	ref := func(p int, rel string) string {
		q := u.Query()
		q.Set("page", strconv.Itoa(p))
		q.Set("per_page", strconv.Itoa(perPage))
		return fmt.Sprintf("<%s%s?%s>; rel=%q", base, u.Path, q.Encode(), rel)
	}
	var parts []string
	if page > 1 {
		parts = append(parts, ref(min(page-1, lastPage), "prev"))
	}
	if page < lastPage {
		parts = append(parts, ref(page+1, "next"), ref(lastPage, "last"))
	}
	if page > 1 {
		parts = append(parts, ref(1, "first"))
	}
	return strings.Join(parts, ", ")
}

// handleGetRunner: GET …/actions/runners/{runner_id}.
func (s *Server) handleGetRunner(w http.ResponseWriter, r *http.Request, sc scope) {
	s.mu.Lock()
	rn := s.runnerInScopeLocked(r.PathValue("runner_id"), sc)
	if rn == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	body := s.runnerJSONLocked(rn, time.Now())
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// handleDeleteRunner: DELETE …/actions/runners/{runner_id}; 422 while it
// runs a job.
func (s *Server) handleDeleteRunner(w http.ResponseWriter, r *http.Request, sc scope) {
	s.mu.Lock()
	rn := s.runnerInScopeLocked(r.PathValue("runner_id"), sc)
	if rn == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	if s.busyLocked(rn) {
		s.mu.Unlock()
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("Bad request - Runner %q is still running a job", rn.name))
		return
	}
	delete(s.runners, rn.id)
	s.emitLocked(Event{Kind: EventRunnerRemoved, RunnerID: rn.id, RunnerName: rn.name, Scope: rn.scope.String(), Detail: "deleted through the API"})
	s.notifyLocked()
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) runnerInScopeLocked(rawID string, sc scope) *runner {
	id, err := strconv.ParseInt(rawID, 10, 64)
	if err != nil {
		return nil
	}
	rn := s.runners[id]
	if rn == nil || rn.scope.key() != sc.key() {
		return nil
	}
	return rn
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return b
}

func randomHex(n int) string { return hex.EncodeToString(randomBytes(n)) }

func randomAlnum(n int) string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := randomBytes(n)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}

// sortedKeys returns a map's int64 keys in increasing order.
func sortedKeys[V any](m map[int64]V) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
