package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// serve gives the provisioner the GitHub client as its RunnerGroups, and
// that client answers from the fake's runner group: private repositories
// yes, public ones no (the group does not allow them), an odd group no,
// with one log line.
func TestServeWiresRunnerGroups(t *testing.T) {
	e := startServe(t, "60s", nil)
	if e.groups == nil {
		t.Fatal("serve set no RunnerGroups")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acme := provisioner.Scope{Org: "acme"}
	if ok, reason, err := e.groups.GroupServes(ctx, acme, "acme/vision", provisioner.VisibilityPrivate); !ok || err != nil {
		t.Errorf("private repository: %v %q %v", ok, reason, err)
	}
	ok, reason, err := e.groups.GroupServes(ctx, acme, "acme/site", provisioner.VisibilityPublic)
	if ok || err != nil || !strings.Contains(reason, `runner group "Default" (id 1) in org acme does not allow public repositories`) {
		t.Errorf("public repository: %v %q %v", ok, reason, err)
	}
	if ok, _, err := e.groups.GroupServes(ctx, provisioner.Scope{Repo: "acme/site"}, "acme/site", provisioner.VisibilityPublic); !ok || err != nil {
		t.Errorf("repository scope: %v %v", ok, err)
	}

	// A group answer with an unknown visibility: no, and said in the log
	// (after the cached answer expires; another org has no cache yet).
	e.gh.SetRunnerGroup(githubtest.RunnerGroup{ID: 1, Org: "beta", Name: "Default", RawVisibility: "everyone"})
	if ok, reason, err := e.groups.GroupServes(ctx, provisioner.Scope{Org: "beta"}, "beta/app", provisioner.VisibilityPrivate); ok || err != nil || !strings.Contains(reason, `visibility "everyone"`) {
		t.Errorf("odd group: %v %q %v", ok, reason, err)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "runner group answer is odd") || !strings.Contains(logs, `"component":"github"`) {
		t.Errorf("no log line for the odd group:\n%s", tail(logs, 20))
	}
}
