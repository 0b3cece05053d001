package github

import "testing"

func TestRoute(t *testing.T) {
	for path, want := range map[string]string{
		"/orgs/acme/actions/runners":                    "GET /orgs/{org}/actions/runners",
		"/orgs/acme/actions/runners/42":                 "GET /orgs/{org}/actions/runners/{runner_id}",
		"/orgs/acme/actions/runners/downloads":          "GET /orgs/{org}/actions/runners/downloads",
		"/repos/a/b/actions/runs/7/jobs":                "GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
		"/repos/a/b/actions/runners/generate-jitconfig": "GET /repos/{owner}/{repo}/actions/runners/generate-jitconfig",
		"/app/hook/deliveries/9/attempts":               "GET /app/hook/deliveries/{delivery_id}/attempts",
		"/repos/a/b/contents/secret-name":               "GET other",
		"/orgs//actions/runners":                        "GET other",
	} {
		if got := route("GET", path); got != want {
			t.Errorf("route(%q) = %q, want %q", path, got, want)
		}
	}
}
