package githubtest

import (
	"fmt"
	"testing"
	"time"

	jwt "github.com/golang-jwt/jwt/v4"
)

// GET /app and GET /rate_limit as GitHub answers them, and an installation
// held to what it was granted.
func TestAppRateLimitAndGrantedPermissions(t *testing.T) {
	key, _ := testKeys(t)
	s := newTestServer(t, Options{AppID: 42, AppPublicKey: &key.PublicKey, AppSlug: "gpu",
		Installations:           map[string]int64{"acme": 7, "bob/tool": 8},
		InstallationPermissions: map[int64]map[string]string{8: {"metadata": "read", "actions": "read"}},
		TokenScopes:             map[string]string{testToken: "repo, admin:org"}})
	now := time.Now()
	jwtTok := "Bearer " + signJWT(t, key, jwt.SigningMethodRS256, "42", now.Add(-30*time.Second), now.Add(2*time.Minute))

	r := call(t, "GET", s.URL()+"/app", jwtTok, nil)
	var app struct {
		ID          int64
		Slug        string
		HTMLURL     string `json:"html_url"`
		Owner       struct{ Login, Type string }
		Permissions map[string]string
		Events      []string
	}
	r.json(t, &app)
	if r.status != 200 || app.ID != 42 || app.Slug != "gpu" || app.Owner.Login != "acme" || app.HTMLURL != s.URL()+"/apps/gpu" ||
		app.Permissions["organization_self_hosted_runners"] != "write" || len(app.Events) != 1 || app.Events[0] != "workflow_job" {
		t.Errorf("GET /app: %d %+v", r.status, app)
	}
	if r := call(t, "GET", s.URL()+"/app", "Bearer "+testToken, nil); r.status != 401 {
		t.Errorf("GET /app with a PAT: %d", r.status)
	}

	// /rate_limit: open without credentials, 401 with unknown ones, and the
	// classic token's scopes in X-OAuth-Scopes.
	if r := call(t, "GET", s.URL()+"/rate_limit", "", nil); r.status != 200 || r.header.Get("X-OAuth-Scopes") != "" {
		t.Errorf("rate_limit without credentials: %d", r.status)
	}
	if r := call(t, "GET", s.URL()+"/rate_limit", "token nope", nil); r.status != 401 || r.message(t) != "Bad credentials" {
		t.Errorf("rate_limit with a bad token: %d", r.status)
	}
	if r := call(t, "GET", s.URL()+"/rate_limit", "token "+testToken, nil); r.status != 200 || r.header.Get("X-OAuth-Scopes") != "repo, admin:org" {
		t.Errorf("rate_limit with a classic token: %d %q", r.status, r.header.Get("X-OAuth-Scopes"))
	}

	// Installation 8 has no administration: its token may not touch the
	// repository's runners; GitHub names the permission the call needs.
	r = call(t, "POST", fmt.Sprintf("%s/app/installations/8/access_tokens", s.URL()), jwtTok, nil)
	var tok struct {
		Token       string
		Permissions map[string]string
	}
	r.json(t, &tok)
	if r.status != 201 || tok.Permissions["administration"] != "" {
		t.Fatalf("access token: %d %+v", r.status, tok)
	}
	r = call(t, "GET", s.URL()+"/repos/bob/tool/actions/runners", "token "+tok.Token, nil)
	if r.status != 403 || r.header.Get("X-Accepted-GitHub-Permissions") != "administration=read" {
		t.Errorf("runners without administration: %d %q", r.status, r.header.Get("X-Accepted-GitHub-Permissions"))
	}
	if r := call(t, "GET", s.URL()+"/repos/bob/tool/actions/runs", "token "+tok.Token, nil); r.status != 200 {
		t.Errorf("runs with actions: read: %d", r.status)
	}

	// A JWT refused outright, as for a deleted key.
	s2 := newTestServer(t, Options{AppID: 42, AppPublicKey: &key.PublicKey, RejectJWT: true, Installations: map[string]int64{"acme": 7}})
	if r := call(t, "GET", s2.URL()+"/app", jwtTok, nil); r.status != 401 {
		t.Errorf("GET /app with RejectJWT: %d", r.status)
	}
}
