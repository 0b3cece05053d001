package githubtest

import (
	"net/http"
	"slices"
	"strings"
	"time"
)

// The App as GitHub describes it (GET /app), what each installation was
// granted, and GET /rate_limit, the call that checks a token without
// spending any of its rate limit. `crabbox-runner doctor` reads them; tests
// set them through Options to play an App set up wrongly.

// DefaultAppPermissions are what the fake App asks for, and each
// installation has, unless Options say otherwise: everything
// crabbox-runner needs (reference §4.1).
var DefaultAppPermissions = map[string]string{
	"actions":                          "read",
	"administration":                   "write",
	"metadata":                         "read",
	"organization_self_hosted_runners": "write",
}

// DefaultAppEvents are the events the fake App subscribes to unless
// Options say otherwise.
var DefaultAppEvents = []string{"workflow_job"}

func (s *Server) appSlug() string {
	if s.opts.AppSlug != "" {
		return s.opts.AppSlug
	}
	return "crabbox-runner"
}

func (s *Server) appPermissions() map[string]string {
	if s.opts.AppPermissions != nil {
		return s.opts.AppPermissions
	}
	return DefaultAppPermissions
}

func (s *Server) appEvents() []string {
	if s.opts.AppEvents != nil {
		return s.opts.AppEvents
	}
	return DefaultAppEvents
}

// appOwner is the account that owns the App: Options.AppOwner, else the
// first org installation's account, else "crabbox".
func (s *Server) appOwner() string {
	if s.opts.AppOwner != "" {
		return s.opts.AppOwner
	}
	keys := make([]string, 0, len(s.opts.Installations))
	for k := range s.opts.Installations {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !strings.Contains(k, "/") {
			return k
		}
	}
	return "crabbox"
}

// installationPermissions are what installation id was granted.
func (s *Server) installationPermissions(id int64) map[string]string {
	if p, ok := s.opts.InstallationPermissions[id]; ok {
		return p
	}
	return s.appPermissions()
}

// installationEvents are the events installation id receives.
func (s *Server) installationEvents(id int64) []string {
	if e, ok := s.opts.InstallationEvents[id]; ok {
		return e
	}
	return s.appEvents()
}

func (s *Server) suspended(id int64) bool {
	return slices.Contains(s.opts.SuspendedInstallations, id)
}

// tokenScopes is the X-OAuth-Scopes header for a plain token, if it has one.
func (s *Server) tokenScopes(tok string) (string, bool) {
	if tok == "" {
		return "", false
	}
	for t, scopes := range s.opts.TokenScopes {
		if sameToken(t, tok) {
			return scopes, true
		}
	}
	return "", false
}

// permissionRank orders permission levels: write includes read.
func permissionRank(level string) int {
	switch level {
	case "read":
		return 1
	case "write":
		return 2
	case "admin":
		return 3
	}
	return 0
}

// missingPermission returns the permission and level a request made with
// an installation token needs and the installation lacks: runners need
// organization_self_hosted_runners (org) or administration (repository),
// read to look and write to change; runs and jobs need actions: read
// (reference §3.1, §4.1). Plain tokens are not held to permissions.
func (s *Server) missingPermission(tok string, sc scope, r *http.Request) (perm, level string, missing bool) {
	s.mu.Lock()
	it, ok := s.instTokens[tok]
	s.mu.Unlock()
	if !ok {
		return "", "", false
	}
	path := r.URL.Path
	switch {
	case strings.Contains(path, "/actions/runners"), strings.Contains(path, "/actions/runner-groups"):
		// Runner groups need the same organization permission as runners
		// (reference §4.1).
		perm = "organization_self_hosted_runners"
		if sc.repo != "" {
			perm = "administration"
		}
		level = "write"
		if r.Method == http.MethodGet {
			level = "read"
		}
	case r.Method == http.MethodPost && strings.HasSuffix(path, "/rerun"):
		// Re-running needs Actions write (docs "Permissions required for
		// GitHub Apps", Actions: POST …/actions/jobs/{job_id}/rerun).
		perm, level = "actions", "write"
	case strings.Contains(path, "/actions/runs"), strings.Contains(path, "/actions/jobs"):
		perm, level = "actions", "read"
	default:
		return "", "", false
	}
	has := s.installationPermissions(it.installationID)[perm]
	return perm, level, permissionRank(has) < permissionRank(level)
}

// handleApp: GET /app, the authenticated App (App JWT only).
func (s *Server) handleApp(w http.ResponseWriter, r *http.Request) {
	if !s.checkJWT(w, r) {
		return
	}
	ids := map[int64]bool{}
	for _, id := range s.opts.Installations {
		ids[id] = true
	}
	owner := s.appOwner()
	s.mu.Lock()
	ownerID := s.idLocked(owner)
	s.mu.Unlock()
	slug := s.appSlug()
	writeJSON(w, http.StatusOK, map[string]any{
		"id":                  s.opts.AppID,
		"slug":                slug,
		"node_id":             nodeID("A", s.opts.AppID),
		"client_id":           "Iv1.fake0123456789",
		"owner":               map[string]any{"login": owner, "id": ownerID, "type": "Organization"},
		"name":                slug,
		"description":         "",
		"external_url":        "https://example.com",
		"html_url":            s.url + "/apps/" + slug,
		"created_at":          "2026-01-01T00:00:00Z",
		"updated_at":          "2026-01-01T00:00:00Z",
		"permissions":         s.appPermissions(),
		"events":              s.appEvents(),
		"installations_count": len(ids),
	})
}

// handleRateLimit: GET /rate_limit. GitHub answers it without credentials
// (the unauthenticated limit) and refuses credentials it does not know. It
// shows the caller's primary window (ratelimit.go) and costs nothing.
func (s *Server) handleRateLimit(w http.ResponseWriter, r *http.Request) {
	if tok := credentials(r); tok != "" {
		s.mu.Lock()
		it, isInst := s.instTokens[tok]
		s.mu.Unlock()
		isPAT := slices.ContainsFunc(s.opts.Tokens, func(t string) bool { return sameToken(t, tok) })
		if !isPAT && (!isInst || time.Now().After(it.expires)) {
			writeError(w, http.StatusUnauthorized, "Bad credentials")
			return
		}
	}
	core := s.rateStatus(s.credential(r))
	writeJSON(w, http.StatusOK, map[string]any{
		"resources": map[string]any{
			"core":   core,
			"search": map[string]any{"limit": 30, "used": 0, "remaining": 30, "reset": core["reset"]},
		},
		"rate": core,
	})
}
