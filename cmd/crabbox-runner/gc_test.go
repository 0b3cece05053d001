package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/providers/vast"
	"github.com/crabbox/crabbox-runner/providers/vast/vasttest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

func TestGCCommandRemovesLeftoverRunners(t *testing.T) {
	gh := githubtest.New(githubtest.Options{Tokens: []string{testToken}})
	defer gh.Close()
	client, err := github.New(github.Config{APIURL: gh.URL(), Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	scope := provisioner.Scope{Repo: "acme/ml"}
	ctx := context.Background()
	for _, name := range []string{"crabbox-gcdep-lgone", "crabbox-otherdep-lgone", "my-own-runner"} {
		if _, err := client.GenerateJITConfig(ctx, scope, name, []string{"self-hosted"}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("deployment: gcdep\ndatabase_url: sqlite:"+filepath.Join(dir, "none.db")+"\n"), 0o600)
	env := map[string]string{"CRABBOX_CONFIG": cfg, "CRABBOX_GITHUB_TOKEN": testToken, "CRABBOX_GITHUB_API_URL": gh.URL()}

	code, out, errs := runCLI(t, env, "gc", "--scope", "acme/ml")
	if code != 0 || !strings.Contains(out, "dry run") || !strings.Contains(out, "crabbox-gcdep-lgone") {
		t.Fatalf("dry run: %d\n%s\n%s", code, out, errs)
	}
	if n := len(gh.Runners()); n != 3 {
		t.Fatalf("the dry run removed runners: %d left", n)
	}
	code, out, errs = runCLI(t, env, "gc", "--scope", "acme/ml", "--yes", "--output", "json")
	if code != 0 {
		t.Fatalf("gc --yes: %d\n%s\n%s", code, out, errs)
	}
	var plan provisioner.GCPlan
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if len(plan.Actions) != 1 || !plan.Actions[0].Done || plan.Actions[0].RunnerName != "crabbox-gcdep-lgone" {
		t.Fatalf("plan %+v", plan)
	}
	var names []string
	for _, r := range gh.Runners() {
		names = append(names, r.Name)
	}
	if len(names) != 2 || strings.Contains(strings.Join(names, " "), "gcdep") {
		t.Fatalf("runners left: %v", names)
	}
	if _, err := os.Stat(filepath.Join(dir, "none.db")); err == nil {
		t.Fatal("gc created a database")
	}
}

// gc against a real provider client and the fake Vast: a dry run changes
// nothing; an action that fails makes gc exit non-zero; the next pass
// finishes the job. Instances of other deployments and untagged ones are
// never touched.
func TestGCCommandOnVast(t *testing.T) {
	fake := vasttest.New(vasttest.Options{Dir: t.TempDir()})
	defer fake.Close()
	gh := githubtest.New(githubtest.Options{Tokens: []string{testToken}})
	defer gh.Close()
	client, err := vast.NewClient(vast.Config{APIKey: vasttest.DefaultAPIKey, APIURL: fake.URL(), MinRequestInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	expired := provisioner.Marker{Deployment: "gcv", LeaseID: "lold", Expires: time.Now().Add(-time.Hour)}
	current := provisioner.Marker{Deployment: "gcv", LeaseID: "lnow", Expires: time.Now().Add(time.Hour)}
	foreign := provisioner.Marker{Deployment: "other", LeaseID: "lx", Expires: time.Now().Add(-time.Hour)}
	ids := map[string]int64{}
	for name, label := range map[string]string{"expired": expired.String(), "current": current.String(), "foreign": foreign.String(), "untagged": ""} {
		offers := vasttest.DefaultOffers
		id, err := client.CreateInstance(ctx, offers[len(ids)].ID, vast.CreateParams{ClientID: "me", Image: "x", Disk: 10, Label: label, CancelUnavail: true})
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = id
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(`deployment: gcv
classes:
  - {name: g, labels: [self-hosted, gpu], gpu: {name: RTX 4090}, providers: [vast]}
`), 0o600)
	env := map[string]string{"CRABBOX_CONFIG": cfg, "CRABBOX_GITHUB_TOKEN": testToken, "CRABBOX_GITHUB_API_URL": gh.URL(),
		"VAST_API_KEY": vasttest.DefaultAPIKey, "CRABBOX_VAST_API_URL": fake.URL(), "CRABBOX_DATABASE_URL": "sqlite:" + filepath.Join(dir, "none.db")}
	alive := func(name string) bool {
		in, ok := fake.Instance(ids[name])
		return ok && !in.Destroyed
	}

	code, out, errs := runCLI(t, env, "gc", "--no-store")
	if code != 0 || !strings.Contains(out, "expired at") || !alive("expired") {
		t.Fatalf("dry run: %d\n%s\n%s", code, out, errs)
	}
	// Every attempt of the first pass fails (one try and five retries).
	for range 6 {
		fake.FailNext(vasttest.OpDestroy, vasttest.InternalError)
	}
	code, out, _ = runCLI(t, env, "gc", "--no-store", "--yes")
	if code != 2 || !strings.Contains(out, "FAILED") || !alive("expired") {
		t.Fatalf("gc with a failing destroy: exit %d\n%s", code, out)
	}
	code, out, errs = runCLI(t, env, "gc", "--no-store", "--yes")
	if code != 0 || alive("expired") {
		t.Fatalf("gc --yes: %d\n%s\n%s", code, out, errs)
	}
	for _, name := range []string{"current", "foreign", "untagged"} {
		if !alive(name) {
			t.Errorf("gc destroyed the %s instance", name)
		}
	}
}
