package main

import (
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/internal/config"
)

// doctor's runner-group check against the fake, one failure mode each.
func TestDoctorRunnerGroup(t *testing.T) {
	const what = "runner group in org:acme"
	for _, tt := range []struct {
		name   string
		group  *githubtest.RunnerGroup // replaces group 1 when set
		github string                  // the config's github: section
		public bool                    // a class sets public_repositories: true
		code   int
		status string
		line   []string
		fix    string
	}{
		{name: "default group", code: 0, status: "OK",
			line: []string{`"Default" (id 1): all repositories, public ones not allowed`}},
		{name: "selected group", group: &githubtest.RunnerGroup{ID: 1, Name: "gpu", Visibility: "selected",
			SelectedRepositories: []string{"acme/vision", "acme/app"}, AllowsPublicRepositories: true}, code: 0, status: "OK",
			line: []string{`"gpu" (id 1): 2 selected repositories, public ones allowed`}},
		{name: "group missing", github: "{scopes: [acme], runner_group_id: 7}", code: 1, status: "FAIL",
			line: []string{"runner group 7 does not exist in acme"}, fix: "set github.runner_group_id to the id of one of acme's runner groups"},
		{name: "no visibility", group: &githubtest.RunnerGroup{ID: 1, Name: "Default", OmitFields: []string{"visibility"}}, code: 1, status: "FAIL",
			line: []string{"has no visibility"}, fix: "/organizations/acme/settings/actions/runner-groups/1"},
		{name: "unknown visibility", group: &githubtest.RunnerGroup{ID: 1, Name: "Default", RawVisibility: "everyone"}, code: 1, status: "FAIL",
			line: []string{`visibility "everyone"`}, fix: "repository access to all or selected"},
		{name: "selected but none selected", group: &githubtest.RunnerGroup{ID: 1, Name: "gpu", Visibility: "selected"}, code: 1, status: "FAIL",
			line: []string{"none is selected"}, fix: "add the repositories"},
		{name: "restricted to workflows", group: &githubtest.RunnerGroup{ID: 1, Name: "Default", RestrictedToWorkflows: true,
			SelectedWorkflows: []string{"acme/app/.github/workflows/gpu.yml@main"}}, code: 0, status: "WARN",
			line: []string{"limited to selected workflows"}, fix: "clear the workflow restriction"},
		{name: "allows_public_repositories missing", group: &githubtest.RunnerGroup{ID: 1, Name: "Default", OmitFields: []string{"allows_public_repositories"}},
			code: 0, status: "WARN", line: []string{"does not say whether public repositories are allowed"}, fix: "check the group"},
		{name: "public class and group refuses public", public: true, code: 1, status: "FAIL",
			line: []string{"does not let public repositories in, but 1 class (a100) sets public_repositories: true"}, fix: `"Allow public repositories"`},
		{name: "public class and private-only group", public: true, group: &githubtest.RunnerGroup{ID: 1, Name: "Default", Visibility: "private", AllowsPublicRepositories: true},
			code: 1, status: "FAIL", line: []string{"does not let public repositories in"}, fix: "public_repositories: false"},
		{name: "public class and group allows public", public: true, group: &githubtest.RunnerGroup{ID: 1, Name: "Default", AllowsPublicRepositories: true},
			code: 0, status: "OK", line: []string{"public ones allowed"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newDoctorSetup(t)
			gh := s.tokenGitHub("repo, admin:org")
			if tt.group != nil {
				gh.SetRunnerGroup(*tt.group)
			}
			if tt.github != "" {
				s.github = tt.github
			}
			if tt.public {
				publicClassesOf = func(cs []config.ClassConfig) []string { return []string{cs[0].Name} }
				t.Cleanup(func() { publicClassesOf = publicClasses })
			}
			code, out := s.run()
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			wantCheck(t, out, tt.status, what, tt.line, tt.fix)
		})
	}

	// Repository scopes have no group to check.
	s := newDoctorSetup(t)
	s.tokenGitHub("repo, admin:org")
	s.github = "{scopes: [acme/app]}"
	if _, out := s.run(); strings.Contains(out, "runner group in") {
		t.Errorf("a repository scope got a runner-group check:\n%s", out)
	}
}

// The class setting is read by name, whether a bool or a *bool.
func TestFieldTrue(t *testing.T) {
	yes := true
	for _, tt := range []struct {
		v    any
		want bool
	}{
		{struct{ PublicRepositories bool }{true}, true},
		{struct{ PublicRepositories bool }{false}, false},
		{struct{ PublicRepositories *bool }{&yes}, true},
		{struct{ PublicRepositories *bool }{nil}, false},
		{struct{ PublicRepositories string }{"true"}, false},
		{struct{ Other bool }{true}, false},
	} {
		if got := fieldTrue(tt.v, "PublicRepositories"); got != tt.want {
			t.Errorf("fieldTrue(%+v) = %v", tt.v, got)
		}
	}
	if got := publicClasses([]config.ClassConfig{{Name: "a"}}); len(got) != 0 {
		t.Errorf("publicClasses = %v", got)
	}
}
