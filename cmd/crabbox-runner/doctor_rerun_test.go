package main

import (
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/github/githubtest"
)

// rerun_lost_jobs needs the Actions write permission: doctor fails an App
// or installation with read only, and a classic token without repo.
func TestDoctorRerunLostJobsNeedsActionsWrite(t *testing.T) {
	const rerunClass = "  - {name: a100, labels: [self-hosted, a100], gpu: {name: A100}, providers: [local], rerun_lost_jobs: true}\n"
	acme := map[string]int64{"acme": 11}
	write := map[string]string{"organization_self_hosted_runners": "write", "administration": "write", "actions": "write", "metadata": "read"}

	t.Run("App asks for actions: read only", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.classes = rerunClass
		s.appGitHub(githubtest.Options{Installations: acme})
		s.github = "{scopes: []}"
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "GitHub App permissions", []string{"does not ask for actions: write", "rerun_lost_jobs on a100"},
			`grant "Repository permissions → Actions: Read and write"`)
		wantCheck(t, out, "FAIL", "installation acme (#11) permissions", []string{"lacks actions: write (has read)"}, "")
	})
	t.Run("installation has not accepted actions: write", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.classes = rerunClass
		s.appGitHub(githubtest.Options{Installations: acme, AppPermissions: write,
			InstallationPermissions: map[int64]map[string]string{11: githubtest.DefaultAppPermissions}})
		s.github = "{scopes: []}"
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "OK", "GitHub App permissions", []string{"actions: write"}, "")
		wantCheck(t, out, "FAIL", "installation acme (#11) permissions", []string{"lacks actions: write (has read)", "rerun_lost_jobs on a100", "the App asks for it"},
			"accept the App's new permissions")
	})
	t.Run("App and installation with actions: write", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.classes = rerunClass
		s.appGitHub(githubtest.Options{Installations: acme, AppPermissions: write})
		s.github = "{scopes: []}"
		code, out := s.run()
		if code != 0 || !strings.HasSuffix(out, "all checks passed\n") {
			t.Fatalf("exit %d\n%s", code, out)
		}
		wantCheck(t, out, "OK", "installation acme (#11)", []string{"actions: write"}, "")
	})
	t.Run("without rerun_lost_jobs read is enough", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.appGitHub(githubtest.Options{Installations: acme})
		s.github = "{scopes: []}"
		if code, out := s.run(); code != 0 {
			t.Fatalf("exit %d\n%s", code, out)
		}
	})
	t.Run("classic token without repo", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.classes = rerunClass
		s.tokenGitHub("admin:org")
		s.github = "{scopes: [acme]}"
		code, out := s.run()
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		wantCheck(t, out, "FAIL", "GitHub token scopes", []string{"repo (re-running lost jobs: rerun_lost_jobs on a100)"}, "")
	})
	t.Run("fine-grained token", func(t *testing.T) {
		s := newDoctorSetup(t)
		s.classes = rerunClass
		s.tokenGitHub("-")
		s.github = "{scopes: [acme]}"
		_, out := s.run()
		wantCheck(t, out, "WARN", "GitHub token: re-running lost jobs", []string{"cannot check it"}, "Actions: Read and write")
	})
}
