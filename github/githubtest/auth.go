package githubtest

import (
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"
	"time"

	jwt "github.com/golang-jwt/jwt/v4"
)

// installationToken is an App installation access token we handed out.
type installationToken struct {
	installationID int64
	expires        time.Time
}

// scope is where a runner request acts: an org, or a repo "owner/name".
type scope struct {
	org  string
	repo string
}

func (sc scope) String() string {
	if sc.repo != "" {
		return "repo:" + sc.repo
	}
	return "org:" + sc.org
}

// key identifies the scope ignoring case, as GitHub does for logins.
func (sc scope) key() string { return strings.ToLower(sc.String()) }

// owner is the org or user that owns the scope.
func (sc scope) owner() string {
	if sc.repo != "" {
		o, _, _ := strings.Cut(sc.repo, "/")
		return o
	}
	return sc.org
}

// credentials returns the token of an Authorization header in either of
// GitHub's forms, "Bearer T" or "token T".
func credentials(r *http.Request) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok {
		return ""
	}
	if !strings.EqualFold(scheme, "bearer") && !strings.EqualFold(scheme, "token") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// scoped authenticates a runner endpoint and passes on its scope.
func (s *Server) scoped(h func(http.ResponseWriter, *http.Request, scope)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sc := scope{org: r.PathValue("org")}
		if o := r.PathValue("owner"); o != "" {
			sc = scope{repo: o + "/" + r.PathValue("repo")}
		}
		tok := credentials(r)
		if tok == "" {
			writeError(w, http.StatusUnauthorized, "Requires authentication")
			return
		}
		switch s.authorize(tok, sc) {
		case http.StatusOK:
			if perm, level, ok := s.missingPermission(tok, sc, r); ok {
				// GitHub names what the call needs in this header.
				w.Header().Set("X-Accepted-GitHub-Permissions", perm+"="+level)
				writeError(w, http.StatusForbidden, "Resource not accessible by integration")
				return
			}
			h(w, r, sc)
		case http.StatusForbidden:
			writeError(w, http.StatusForbidden, "Resource not accessible by integration")
		default:
			writeError(w, http.StatusUnauthorized, "Bad credentials")
		}
	}
}

// authorize answers 200, 401 (unknown token) or 403 (an installation token
// for another org or repo).
func (s *Server) authorize(tok string, sc scope) int {
	for _, t := range s.opts.Tokens {
		if t != "" && subtle.ConstantTimeCompare([]byte(t), []byte(tok)) == 1 {
			return http.StatusOK
		}
	}
	s.mu.Lock()
	it, ok := s.instTokens[tok]
	s.mu.Unlock()
	if !ok || time.Now().After(it.expires) {
		return http.StatusUnauthorized
	}
	if s.installationCovers(it.installationID, sc) {
		return http.StatusOK
	}
	return http.StatusForbidden
}

// installationCovers reports whether the installation may act on sc: an
// org installation covers the org and its repos, a repo one that repo.
func (s *Server) installationCovers(id int64, sc scope) bool {
	for key, iid := range s.opts.Installations {
		if iid != id {
			continue
		}
		if strings.Contains(key, "/") {
			if sc.repo != "" && strings.EqualFold(key, sc.repo) {
				return true
			}
		} else if strings.EqualFold(key, sc.owner()) {
			return true
		}
	}
	return false
}

// checkJWT verifies an App JWT: RS256 signed by the App's key, iss = the
// App id, exp in the future and at most 10 minutes ahead (GitHub's rule).
// It writes the 401 itself and returns false when the JWT is refused.
func (s *Server) checkJWT(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.AppPublicKey == nil || s.opts.AppID == 0 || s.opts.RejectJWT {
		writeError(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
		return false
	}
	claims := &jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(credentials(r), claims,
		func(*jwt.Token) (any, error) { return s.opts.AppPublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}))
	now := time.Now()
	switch {
	case err != nil && claims.ExpiresAt != nil && claims.ExpiresAt.Before(now):
		writeError(w, http.StatusUnauthorized, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires")
	case err != nil:
		writeError(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
	case claims.ExpiresAt == nil:
		writeError(w, http.StatusUnauthorized, "'Expiration time' claim ('exp') is missing")
	case claims.ExpiresAt.After(now.Add(10 * time.Minute)):
		writeError(w, http.StatusUnauthorized, "'Expiration time' claim ('exp') is too far in the future")
	case claims.Issuer != strconv.FormatInt(s.opts.AppID, 10):
		writeError(w, http.StatusUnauthorized, "'Issuer' claim ('iss') does not name this GitHub App")
	default:
		return true
	}
	return false
}

// handleAccessToken: POST /app/installations/{id}/access_tokens.
func (s *Server) handleAccessToken(w http.ResponseWriter, r *http.Request) {
	if !s.checkJWT(w, r) {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || !s.knownInstallation(id) {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	if s.suspended(id) {
		writeError(w, http.StatusForbidden, "This installation has been suspended")
		return
	}
	tok := "ghs_" + randomAlnum(36)
	expires := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	s.mu.Lock()
	s.instTokens[tok] = installationToken{installationID: id, expires: expires}
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{
		"token":                tok,
		"expires_at":           expires.Format(time.RFC3339),
		"permissions":          s.installationPermissions(id),
		"repository_selection": "all",
	})
}

func (s *Server) knownInstallation(id int64) bool {
	for _, iid := range s.opts.Installations {
		if iid == id {
			return true
		}
	}
	return false
}

// handleOrgInstallation: GET /orgs/{org}/installation.
func (s *Server) handleOrgInstallation(w http.ResponseWriter, r *http.Request) {
	if !s.checkJWT(w, r) {
		return
	}
	org := r.PathValue("org")
	id, ok := s.opts.Installations[strings.ToLower(org)]
	if !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, s.installationJSON(id, org, "all"))
}

// handleRepoInstallation: GET /repos/{owner}/{repo}/installation; a repo
// installation wins over its owner's.
func (s *Server) handleRepoInstallation(w http.ResponseWriter, r *http.Request) {
	if !s.checkJWT(w, r) {
		return
	}
	owner := r.PathValue("owner")
	full := strings.ToLower(owner + "/" + r.PathValue("repo"))
	if id, ok := s.opts.Installations[full]; ok {
		writeJSON(w, http.StatusOK, s.installationJSON(id, owner, "selected"))
		return
	}
	if id, ok := s.opts.Installations[strings.ToLower(owner)]; ok {
		writeJSON(w, http.StatusOK, s.installationJSON(id, owner, "all"))
		return
	}
	writeError(w, http.StatusNotFound, "Not Found")
}

func (s *Server) installationJSON(id int64, account, selection string) map[string]any {
	m := map[string]any{
		"id":                   id,
		"app_id":               s.opts.AppID,
		"app_slug":             s.appSlug(),
		"account":              map[string]any{"login": account, "type": "Organization"},
		"target_type":          "Organization",
		"repository_selection": selection,
		"permissions":          s.installationPermissions(id),
		"events":               s.installationEvents(id),
		"access_tokens_url":    s.url + "/app/installations/" + strconv.FormatInt(id, 10) + "/access_tokens",
		"html_url":             s.url + "/organizations/" + account + "/settings/installations/" + strconv.FormatInt(id, 10),
		"suspended_at":         nil,
		"suspended_by":         nil,
	}
	if s.suspended(id) {
		m["suspended_at"] = "2026-01-02T03:04:05Z"
		m["suspended_by"] = map[string]any{"login": account + "-admin", "type": "User"}
	}
	return m
}
