package githubtest

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

func TestRunnerDownloads(t *testing.T) {
	tests := []struct {
		name, version, path, auth string
		status                    int
	}{
		{"repo", "", "/repos/acme/app/actions/runners/downloads", "Bearer " + testToken, 200},
		{"org, other version", "2.331.0", "/orgs/acme/actions/runners/downloads", "token " + testToken, 200},
		{"no credentials", "", "/repos/acme/app/actions/runners/downloads", "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Options{RunnerVersion: tt.version})
			r := call(t, "GET", s.URL()+tt.path, tt.auth, nil)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.status != 200 {
				return
			}
			want := tt.version
			if want == "" {
				want = DefaultRunnerVersion
			}
			var list []runnerDownload
			r.json(t, &list)
			if len(list) != 3 {
				t.Fatalf("%d entries: %s", len(list), r.body)
			}
			sums := map[string]bool{}
			for _, d := range list {
				sums[d.SHA256Checksum] = true
				if d.OS != "linux" || d.Filename != "actions-runner-linux-"+d.Architecture+"-"+want+".tar.gz" {
					t.Errorf("entry %+v", d)
				}
				// What the endpoint says must download and verify.
				got := call(t, "GET", d.DownloadURL, "", nil)
				sum := sha256.Sum256(got.body)
				if got.status != 200 || hex.EncodeToString(sum[:]) != d.SHA256Checksum {
					t.Errorf("%s: status %d, checksum %x, want %s", d.DownloadURL, got.status, sum, d.SHA256Checksum)
				}
			}
			// Each architecture's tarball is its own (reference §5.1).
			if len(sums) != len(list) {
				t.Errorf("%d checksums for %d architectures: %s", len(sums), len(list), r.body)
			}
		})
	}
}
