package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/lambda/lambdatest"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/store"
	"github.com/crabbox/crabbox-runner/store/sqlite"
)

const (
	doctorSecret = "0123456789abcdef0123456789abcdef"
	doctorAppID  = 4242
	doctorToken  = "ghp_doctortoken0123456789abcdefABCDEF"
)

var (
	doctorKeyOnce sync.Once
	doctorKey     *rsa.PrivateKey
	doctorKeyPEM  string
)

func doctorAppKey(t *testing.T) (*rsa.PrivateKey, string) {
	t.Helper()
	doctorKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		doctorKey = k
		doctorKeyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
	})
	return doctorKey, doctorKeyPEM
}

// doctorSetup is a deployment for doctor to check: a config file and the
// environment, with a healthy fake GitHub in token mode and the local
// provider unless a test changes them.
type doctorSetup struct {
	t         *testing.T
	dir       string
	github    string // the config's github: section
	providers string // the config's providers: section
	classes   string // the config's classes
	env       map[string]string
}

func newDoctorSetup(t *testing.T) *doctorSetup {
	dir := t.TempDir()
	return &doctorSetup{t: t, dir: dir,
		github:    "{scopes: [acme]}",
		providers: "{local: {dir: " + dir + "}}",
		classes:   "  - {name: a100, labels: [self-hosted, a100], gpu: {name: A100}, providers: [local]}\n",
		env:       map[string]string{"CRABBOX_WEBHOOK_SECRET": doctorSecret},
	}
}

// tokenGitHub points the setup at a fake GitHub that accepts doctorToken
// with the scopes given (none listed when "-").
func (s *doctorSetup) tokenGitHub(scopes string) *githubtest.Server {
	opts := githubtest.Options{Tokens: []string{doctorToken}, Logf: s.t.Logf}
	if scopes != "-" {
		opts.TokenScopes = map[string]string{doctorToken: scopes}
	}
	gh := githubtest.New(opts)
	s.t.Cleanup(gh.Close)
	s.env["CRABBOX_GITHUB_TOKEN"] = doctorToken
	s.env["CRABBOX_GITHUB_API_URL"] = gh.URL()
	return gh
}

// appGitHub points the setup at a fake GitHub with the App doctorAppID.
func (s *doctorSetup) appGitHub(opts githubtest.Options) *githubtest.Server {
	key, keyPEM := doctorAppKey(s.t)
	opts.AppID, opts.AppPublicKey, opts.Logf = doctorAppID, &key.PublicKey, s.t.Logf
	gh := githubtest.New(opts)
	s.t.Cleanup(gh.Close)
	delete(s.env, "CRABBOX_GITHUB_TOKEN")
	s.env["CRABBOX_GITHUB_APP_ID"] = fmt.Sprint(doctorAppID)
	s.env["CRABBOX_GITHUB_APP_PRIVATE_KEY"] = keyPEM
	s.env["CRABBOX_GITHUB_API_URL"] = gh.URL()
	return gh
}

func (s *doctorSetup) dbPath() string { return filepath.Join(s.dir, "d.db") }

// run writes the config and runs doctor. No secret of the environment may
// appear in what it prints.
func (s *doctorSetup) run() (int, string) {
	s.t.Helper()
	cfg := filepath.Join(s.dir, "c.yaml")
	yaml := `deployment: doc
database_url: sqlite:` + s.dbPath() + `
github: ` + s.github + `
runner: {version: "2.330.0", sha256: "` + strings.Repeat("ab", 32) + `"}
providers: ` + s.providers + `
classes:
` + s.classes
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		s.t.Fatal(err)
	}
	if _, ok := s.env["CRABBOX_CONFIG"]; !ok {
		s.env["CRABBOX_CONFIG"] = cfg
	}
	code, out, errs := runCLI(s.t, s.env, "doctor")
	s.t.Logf("doctor: exit %d\n%s%s", code, out, errs)
	for k, v := range s.env {
		secret := strings.Contains(k, "SECRET") || strings.Contains(k, "TOKEN") || strings.Contains(k, "KEY")
		if secret && v != "" && strings.Contains(out+errs, v) {
			s.t.Errorf("doctor printed the value of %s", k)
		}
	}
	if strings.Contains(out+errs, "PRIVATE KEY") {
		s.t.Error("doctor printed a private key")
	}
	return code, out
}

// wantCheck asserts that doctor printed the check with the status, a line
// holding each of want, and for FAIL and WARN a fix line holding fix.
func wantCheck(t *testing.T, out, status, what string, want []string, fix string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	prefix := fmt.Sprintf("%-5s %-44s ", status, what)
	for i, l := range lines {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		for _, w := range want {
			if !strings.Contains(l, w) {
				t.Errorf("%s %s: line %q lacks %q", status, what, l, w)
			}
		}
		next := ""
		if i+1 < len(lines) {
			next = strings.TrimSpace(lines[i+1])
		}
		hasFix := strings.HasPrefix(next, "fix: ")
		switch {
		case status == "OK" && hasFix:
			t.Errorf("OK %s has a fix line", what)
		case status != "OK" && !hasFix:
			t.Errorf("%s %s has no fix line", status, what)
		case status != "OK" && !strings.Contains(next, fix):
			t.Errorf("%s %s: fix %q lacks %q", status, what, next, fix)
		}
		return
	}
	t.Errorf("no %s line for %q in:\n%s", status, what, out)
}

// noCheck asserts doctor printed no line for the check.
func noCheck(t *testing.T, out, what string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if len(l) > 6 && strings.HasPrefix(l[6:], what+" ") {
			t.Errorf("unexpected check line %q", l)
		}
	}
}

func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestDoctorHealthyTokenDeployment(t *testing.T) {
	s := newDoctorSetup(t)
	s.tokenGitHub("repo, admin:org")
	code, out := s.run()
	if code != 0 || !strings.HasSuffix(out, "all checks passed\n") {
		t.Fatalf("exit %d", code)
	}
	wantCheck(t, out, "OK", "configuration", []string{"c.yaml", "deployment doc", "1 class a100"}, "")
	wantCheck(t, out, "OK", "database", []string{"does not exist yet; serve creates it and applies"}, "")
	wantCheck(t, out, "OK", "webhook secret", []string{"set, 32 bytes"}, "")
	wantCheck(t, out, "OK", "status page and /metrics", []string{"closed (403) on :8080"}, "")
	wantCheck(t, out, "OK", "GitHub token", []string{"classic token with scopes: repo, admin:org"}, "")
	wantCheck(t, out, "OK", "GitHub token scopes", nil, "")
	wantCheck(t, out, "OK", "runners in org:acme", []string{"0 runners listed"}, "")
	wantCheck(t, out, "OK", "provider local", []string{"configured"}, "")
	wantCheck(t, out, "OK", "offers for class a100 on local", []string{"cheapest A100 PCIE at $0.89/h"}, "")

	// Once the database exists: it opens, answers, and its schema is current.
	st, err := store.Open(context.Background(), "sqlite:"+s.dbPath())
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	code, out = s.run()
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	wantCheck(t, out, "OK", "database", []string{"opens and answers"}, "")
	wantCheck(t, out, "OK", "database schema", []string{"current: "}, "")
}

func TestDoctorTokenFailures(t *testing.T) {
	t.Run("rejected", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.tokenGitHub("repo, admin:org")
		s.env["CRABBOX_GITHUB_TOKEN"] = "ghp_wrongwrongwrongwrongwrong"
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "GitHub token", []string{"401 Bad credentials", "refused CRABBOX_GITHUB_TOKEN"}, "/settings/tokens")
		noCheck(t, out, "runners in org:acme")
		// The other checks still run.
		wantCheck(t, out, "OK", "offers for class a100 on local", nil, "")
	})
	t.Run("classic token without admin:org", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.tokenGitHub("repo, workflow")
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "GitHub token scopes", []string{"lacks admin:org or manage_runners:org (org runners in acme)"}, "add the scopes named")
	})
	t.Run("fine-grained token", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.tokenGitHub("-")
		code, out := s.run()
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "OK", "GitHub token", []string{"not a classic token"}, "")
		noCheck(t, out, "GitHub token scopes")
		wantCheck(t, out, "OK", "runners in org:acme", nil, "")
	})
	t.Run("GitHub unreachable", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.tokenGitHub("repo, admin:org")
		s.env["CRABBOX_GITHUB_API_URL"] = closedPortURL(t)
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "GitHub token", []string{"GitHub did not answer"}, "CRABBOX_GITHUB_API_URL")
	})
	t.Run("no credentials", func(t *testing.T) {
		s := newDoctorSetup(t)
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "GitHub credentials", []string{"no credentials"}, "CRABBOX_GITHUB_APP_ID")
	})
	t.Run("no scopes", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.tokenGitHub("repo, admin:org")
		s.github = "{}"
		code, out := s.run()
		if code != 0 || !strings.HasSuffix(out, "all checks passed, 1 warning\n") {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "WARN", "github.scopes", []string{"empty"}, "list your org")
	})
}

func TestDoctorWebhookSecret(t *testing.T) {
	for i, tt := range []struct {
		secret, status, line, fix string
		code                      int
	}{
		{"", "FAIL", "not set: serve refuses to start", "CRABBOX_WEBHOOK_SECRET_FILE", 1},
		{"s3cret-s3cret", "FAIL", "only 13 bytes: serve refuses to start", "at least 16 bytes", 1},
		{"changeme", "WARN", "well-known placeholder", "openssl rand -hex 32", 0},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "WARN", "only 1 different character:", "openssl rand -hex 32", 0},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			s := newDoctorSetup(t)
			s.tokenGitHub("repo, admin:org")
			s.env["CRABBOX_WEBHOOK_SECRET"] = tt.secret
			code, out := s.run()
			if code != tt.code {
				t.Fatalf("exit %d, want %d", code, tt.code)
			}
			wantCheck(t, out, tt.status, "webhook secret", []string{tt.line}, tt.fix)
		})
	}
}

func TestDoctorHealthyApp(t *testing.T) {
	s := newDoctorSetup(t)
	s.appGitHub(githubtest.Options{Installations: map[string]int64{"acme": 11, "bob/tool": 12}})
	s.github = "{scopes: [bob/tool]}"
	code, out := s.run()
	if code != 0 || !strings.HasSuffix(out, "all checks passed\n") {
		t.Fatalf("exit %d", code)
	}
	wantCheck(t, out, "OK", "GitHub App private key", []string{"parses"}, "")
	wantCheck(t, out, "OK", "GitHub App", []string{"crabbox-runner (id 4242, owned by acme): GitHub accepts its JWT"}, "")
	wantCheck(t, out, "OK", "GitHub App permissions", []string{"organization_self_hosted_runners: write", "administration: write", "actions: read"}, "")
	wantCheck(t, out, "OK", "GitHub App events", []string{"subscribed to workflow_job"}, "")
	wantCheck(t, out, "OK", "GitHub App installations", []string{"2: acme (organization), bob (user)"}, "")
	wantCheck(t, out, "OK", "installation acme (#11)", []string{"granted organization_self_hosted_runners: write, actions: read; receives workflow_job"}, "")
	wantCheck(t, out, "OK", "installation bob (#12)", []string{"granted administration: write, actions: read"}, "")
	wantCheck(t, out, "OK", "runners in org:acme", nil, "")
	wantCheck(t, out, "OK", "runners in repo:bob/tool", nil, "")
}

// Every way an App can be set up wrongly gets its own message and fix.
func TestDoctorAppFailures(t *testing.T) {
	acme := map[string]int64{"acme": 11}
	for _, tt := range []struct {
		name   string
		opts   githubtest.Options
		scopes string
		key    string      // replaces the private key
		checks [][4]string // status, check, text in the line, text in the fix
	}{
		{name: "key not PEM", opts: githubtest.Options{Installations: acme},
			key:    "-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----",
			checks: [][4]string{{"FAIL", "GitHub App private key", "CRABBOX_GITHUB_APP_PRIVATE_KEY", "Private keys"}}},
		{name: "JWT rejected", opts: githubtest.Options{Installations: acme, RejectJWT: true},
			checks: [][4]string{{"FAIL", "GitHub App", "401", "CRABBOX_GITHUB_APP_ID (4242)"}}},
		{name: "App lacks actions", opts: githubtest.Options{Installations: acme,
			AppPermissions: map[string]string{"organization_self_hosted_runners": "write", "metadata": "read"}},
			checks: [][4]string{
				{"FAIL", "GitHub App permissions", "does not ask for actions: read", `grant "Repository permissions → Actions: Read-only" at ` + "http://"},
				{"FAIL", "installation acme (#11) permissions", "lacks actions: read (has none)", "/organizations/acme/settings/apps/crabbox-runner/permissions"},
			}},
		{name: "App not subscribed to workflow_job", opts: githubtest.Options{Installations: acme, AppEvents: []string{"push"}},
			checks: [][4]string{
				{"FAIL", "GitHub App events", "not subscribed to workflow_job", "tick Workflow job"},
				{"FAIL", "installation acme (#11) events", "does not receive workflow_job", "subscribe the App to Workflow job"},
			}},
		{name: "installed nowhere", opts: githubtest.Options{},
			checks: [][4]string{{"FAIL", "GitHub App installations", "installed nowhere", "/apps/crabbox-runner/installations/new"}}},
		{name: "installation has not accepted new permissions", scopes: "[acme]", opts: githubtest.Options{Installations: acme,
			InstallationPermissions: map[int64]map[string]string{11: {"organization_self_hosted_runners": "read", "actions": "read"}}},
			checks: [][4]string{
				{"FAIL", "installation acme (#11) permissions", "lacks organization_self_hosted_runners: write (has read): the App asks for it", "accept the App's new permissions at http://"},
				// Listing needs read only: it works, registering would not.
				{"OK", "runners in org:acme", "", ""},
			}},
		{name: "neither App nor installation has org runners", scopes: "[acme]", opts: githubtest.Options{Installations: acme,
			AppPermissions: map[string]string{"administration": "write", "actions": "read"}},
			checks: [][4]string{
				{"FAIL", "installation acme (#11) permissions", "lacks organization_self_hosted_runners: write (has none)", `grant "Organization permissions → Self-hosted runners: Read and write"`},
				{"FAIL", "runners in org:acme", "403 Resource not accessible by integration (the call needs organization_self_hosted_runners=read)", "Self-hosted runners"},
			}},
		{name: "installation has not accepted workflow_job", opts: githubtest.Options{Installations: acme,
			InstallationEvents: map[int64][]string{11: {}}},
			checks: [][4]string{{"FAIL", "installation acme (#11) events", "the App subscribes to it, the installation has not accepted it", "/organizations/acme/settings/installations/11"}}},
		{name: "suspended", scopes: "[acme]", opts: githubtest.Options{Installations: acme, SuspendedInstallations: []int64{11}},
			checks: [][4]string{{"FAIL", "installation acme (#11)", "suspended", "unsuspend it at"}}},
		{name: "not installed on a configured scope", scopes: "[acme, stranger]", opts: githubtest.Options{Installations: acme},
			checks: [][4]string{
				{"OK", "runners in org:acme", "", ""},
				{"FAIL", "runners in org:stranger", "not installed on stranger", "/apps/crabbox-runner/installations/new"},
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newDoctorSetup(t)
			s.appGitHub(tt.opts)
			s.github = "{scopes: " + cmpOr(tt.scopes, "[]") + "}"
			if tt.key != "" {
				s.env["CRABBOX_GITHUB_APP_PRIVATE_KEY"] = tt.key
			}
			code, out := s.run()
			if code != 1 {
				t.Fatalf("exit %d", code)
			}
			for _, c := range tt.checks {
				var want []string
				if c[2] != "" {
					want = []string{c[2]}
				}
				wantCheck(t, out, c[0], c[1], want, c[3])
			}
			if tt.name == "suspended" {
				noCheck(t, out, "runners in org:acme")
			}
		})
	}
}

func TestDoctorConfigAndDatabase(t *testing.T) {
	t.Run("invalid config", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.classes = "  - {name: a100, labels: [self-hosted, a100], gpu: {name: A100}, providers: [nowhere]}\n"
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "configuration", []string{"classes[0]"}, "correct classes[0]")
		// Nothing else can be checked.
		if n := strings.Count(out, "\n"); n != 2 {
			t.Errorf("%d lines, want the failure and its fix", n)
		}
	})
	t.Run("config file missing", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.env["CRABBOX_CONFIG"] = filepath.Join(s.dir, "nope.yaml")
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "configuration", []string{"nope.yaml"}, "CRABBOX_CONFIG exists")
	})
	t.Run("database directory missing", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.tokenGitHub("repo, admin:org")
		s.env["CRABBOX_DATABASE_URL"] = "sqlite:" + filepath.Join(s.dir, "no", "such", "d.db")
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "database", []string{"neither does its directory"}, "mkdir -p")
	})
	t.Run("not a database", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.tokenGitHub("repo, admin:org")
		os.WriteFile(s.dbPath(), []byte(strings.Repeat("not sqlite\n", 100)), 0o600)
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "database", []string{"sqlite:" + s.dbPath()}, "crabbox-runner SQLite database")
	})
	t.Run("schema from a newer version", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.tokenGitHub("repo, admin:org")
		st, err := store.Open(context.Background(), "sqlite:"+s.dbPath())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.(*sqlite.Store).DB().Exec(`INSERT INTO crabbox_migration (version, name, applied_at) VALUES (999, '999_future.up.sql', 1)`); err != nil {
			t.Fatal(err)
		}
		st.Close()
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "database schema", []string{"does not know (999)"}, "crabbox-runner version that serve runs")
	})
	t.Run("PostgreSQL unreachable and its password kept out", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.tokenGitHub("repo, admin:org")
		port := strings.TrimPrefix(closedPortURL(t), "http://127.0.0.1:")
		s.env["CRABBOX_DATABASE_URL"] = "postgres://crabbox:hunter2-db-password@127.0.0.1:" + port + "/crabbox?connect_timeout=5"
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "database", []string{"postgres://crabbox:xxxxx@127.0.0.1:" + port}, "PostgreSQL accepts connections")
		if strings.Contains(out, "hunter2") {
			t.Error("the database password was printed")
		}
	})
}

func TestDoctorProviders(t *testing.T) {
	classes := "  - {name: a100, labels: [self-hosted, a100], gpu: {name: A100, min_memory_gb: 40}, providers: [vast, lambda], max_price_per_hour: 2}\n"
	setup := func(t *testing.T) (*doctorSetup, *vasttest.Server, *lambdatest.Server) {
		v := vasttest.New(vasttest.Options{Dir: t.TempDir(), Logf: t.Logf})
		t.Cleanup(v.Close)
		l := lambdatest.New(t, lambdatest.Options{})
		s := newDoctorSetup(t)
		s.tokenGitHub("repo, admin:org")
		s.providers = "{vast: {min_request_interval: 1ms}, lambda: {min_request_interval: 1ms}}"
		s.classes = classes
		s.env["VAST_API_KEY"], s.env["CRABBOX_VAST_API_URL"] = v.APIKey(), v.URL()
		s.env["LAMBDA_API_KEY"], s.env["CRABBOX_LAMBDA_API_URL"] = l.APIKey(), l.URL()
		return s, v, l
	}
	t.Run("both work", func(t *testing.T) {
		s, v, l := setup(t)
		code, out := s.run()
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "OK", "provider vast", []string{"the API accepts VAST_API_KEY"}, "")
		wantCheck(t, out, "OK", "provider lambda", []string{"the API accepts LAMBDA_API_KEY"}, "")
		wantCheck(t, out, "OK", "offers for class a100 on vast", []string{"cheapest A100 PCIE at $0.71/h"}, "")
		wantCheck(t, out, "OK", "offers for class a100 on lambda", []string{"cheapest A100 SXM4 at $1.29/h"}, "")
		// Read-only calls, nothing else.
		for _, r := range v.Requests() {
			if r.Op != vasttest.OpList && r.Op != vasttest.OpSearch {
				t.Errorf("vast: %s %s", r.Method, r.Path)
			}
		}
		for _, r := range l.Requests() {
			if r.Method != "GET" {
				t.Errorf("lambda: %s %s", r.Method, r.Path)
			}
		}
	})
	t.Run("keys rejected", func(t *testing.T) {
		s, _, _ := setup(t)
		s.env["VAST_API_KEY"] = "vast-wrong-key-0123456789"
		s.env["LAMBDA_API_KEY"] = "lambda-wrong-key-0123456789"
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "provider vast", []string{"the API rejected VAST_API_KEY (HTTP 401)"}, "check VAST_API_KEY")
		wantCheck(t, out, "FAIL", "provider lambda", []string{"the API rejected LAMBDA_API_KEY (HTTP 401)"}, "check LAMBDA_API_KEY")
		noCheck(t, out, "offers for class a100 on vast")
		noCheck(t, out, "offers for class a100 on lambda")
	})
	t.Run("keys missing", func(t *testing.T) {
		s, _, _ := setup(t)
		delete(s.env, "VAST_API_KEY")
		delete(s.env, "LAMBDA_API_KEY")
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		// The configuration names the key; the provider checks never run.
		wantCheck(t, out, "FAIL", "configuration", []string{"vast needs VAST_API_KEY"}, "set VAST_API_KEY")
		delete(s.env, "CRABBOX_CONFIG")
		s.classes = strings.Replace(classes, "[vast, lambda]", "[lambda]", 1)
		code, out = s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "configuration", []string{"lambda needs LAMBDA_API_KEY"}, "set LAMBDA_API_KEY")
	})
	t.Run("APIs unreachable", func(t *testing.T) {
		s, _, _ := setup(t)
		s.env["CRABBOX_VAST_API_URL"] = closedPortURL(t)
		s.env["CRABBOX_LAMBDA_API_URL"] = closedPortURL(t)
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "provider vast", []string{"the API is unreachable at " + s.env["CRABBOX_VAST_API_URL"]}, "CRABBOX_VAST_API_URL")
		wantCheck(t, out, "FAIL", "provider lambda", []string{"the API is unreachable at " + s.env["CRABBOX_LAMBDA_API_URL"]}, "CRABBOX_LAMBDA_API_URL")
	})
	t.Run("APIs failing", func(t *testing.T) {
		s, v, l := setup(t)
		v.FailNext(vasttest.OpList, vasttest.InternalError, vasttest.InternalError)
		l.FailNext(2, lambdatest.Fault{Status: 503, Body: "upstream down", Path: "/instances"})
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "provider vast", []string{"the API answered HTTP 500"}, "vast has trouble")
		wantCheck(t, out, "FAIL", "provider lambda", []string{"the API answered HTTP 503"}, "lambda has trouble")
	})
	t.Run("Lambda account inactive", func(t *testing.T) {
		s, _, l := setup(t)
		l.FailNext(1, lambdatest.Fault{Status: 403, Path: "/instances",
			Body: `{"error": {"code": "global/account-inactive", "message": "Your account is inactive."}}`})
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "provider lambda", []string{"the account is inactive"}, "reactivate")
		wantCheck(t, out, "OK", "provider vast", nil, "")
	})
	t.Run("no fitting offer", func(t *testing.T) {
		s, _, _ := setup(t)
		s.classes = strings.Replace(classes, "max_price_per_hour: 2", "max_price_per_hour: 0.1", 1)
		code, out := s.run()
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "OK", "offers for class a100 on vast", []string{"none fit right now"}, "")
		wantCheck(t, out, "WARN", "class a100", []string{"no provider has a fitting offer right now"}, "crabbox-runner offers --class a100")
	})
}
