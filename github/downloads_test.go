package github_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/github/githubtest"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// TestRunnerDownloadFromFake asks the fake GitHub, in both auth modes and at
// both scopes, and checks that what it says downloads and verifies.
func TestRunnerDownloadFromFake(t *testing.T) {
	for _, m := range modes {
		for _, scope := range []provisioner.Scope{{Org: "acme"}, {Repo: "bob/tool"}} {
			t.Run(m.name+"/"+scope.Key(), func(t *testing.T) {
				_, c, rec := m.setup(t)
				ctx := ctxFor(t)
				rel, err := c.RunnerDownload(ctx, scope, "linux", "x64")
				if err != nil {
					t.Fatal(err)
				}
				if rel.Version != githubtest.DefaultRunnerVersion || rel.OS != "linux" || rel.Arch != "x64" ||
					rel.Filename != "actions-runner-linux-x64-"+githubtest.DefaultRunnerVersion+".tar.gz" {
					t.Fatalf("release = %+v", rel)
				}
				path := "/repos/bob/tool/actions/runners/downloads"
				if scope.Org != "" {
					path = "/orgs/acme/actions/runners/downloads"
				}
				if rec.count("GET "+path) != 1 {
					t.Errorf("GET %s not sent once", path)
				}
				resp, err := http.Get(rel.URL)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				sum := sha256.Sum256(body)
				if resp.StatusCode != 200 || hex.EncodeToString(sum[:]) != rel.SHA256 {
					t.Fatalf("download %s: status %d, sha256 %x, want %s", rel.URL, resp.StatusCode, sum, rel.SHA256)
				}

				if _, err := c.RunnerDownload(ctx, scope, "linux", "s390x"); err == nil || !strings.Contains(err.Error(), "linux/x64") {
					t.Errorf("unknown arch: %v", err)
				}
			})
		}
	}
}

// TestRunnerDownloadAnswers covers answers the fake never gives.
func TestRunnerDownloadAnswers(t *testing.T) {
	const goodSum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name    string
		status  int
		body    string
		want    *github.RunnerRelease
		wantErr string
	}{
		{"picks the os and arch, upper-case checksum", 200, `[
			{"os":"osx","architecture":"x64","download_url":"https://x/osx.tar.gz","filename":"actions-runner-osx-x64-2.336.0.tar.gz","sha256_checksum":"` + goodSum + `"},
			{"os":"linux","architecture":"x64","download_url":"https://x/l.tar.gz","filename":"actions-runner-linux-x64-2.336.0.tar.gz","sha256_checksum":"` + strings.ToUpper(goodSum) + `"}]`,
			&github.RunnerRelease{OS: "linux", Arch: "x64", Version: "2.336.0", URL: "https://x/l.tar.gz", Filename: "actions-runner-linux-x64-2.336.0.tar.gz", SHA256: goodSum}, ""},
		{"no checksum", 200, `[{"os":"linux","architecture":"x64","download_url":"https://x/l.tar.gz","filename":"actions-runner-linux-x64-2.336.0.tar.gz"}]`,
			nil, "no valid sha256_checksum"},
		{"no version in the name", 200, `[{"os":"linux","architecture":"x64","download_url":"https://x/l.tar.gz","filename":"runner.tar.gz","sha256_checksum":"` + goodSum + `"}]`,
			nil, "carries no version"},
		{"empty list", 200, `[]`, nil, "listed none"},
		{"forbidden", 403, `{"message":"Resource not accessible by integration"}`, nil, "403"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/repos/acme/app/actions/runners/downloads" {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			c, err := github.New(github.Config{APIURL: srv.URL, Token: testToken})
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.RunnerDownload(ctxFor(t), provisioner.Scope{Repo: "acme/app"}, "linux", "x64")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), testToken) {
					t.Fatal("the token is in the error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *got != *tt.want {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
