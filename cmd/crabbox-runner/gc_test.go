package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/github/githubtest"
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
