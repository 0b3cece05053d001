package action

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// TestRunRefuses covers what Run refuses before it contacts anyone: an
// environment that is not a runner's, and an output file it cannot write.
func TestRunRefuses(t *testing.T) {
	dir := t.TempDir()
	const token = "ghp_refusedTokenNeverShown01"
	runner := map[string]string{
		"INPUT_MODE": "stop", "INPUT_LEASE-ID": "labcdefghjk", "INPUT_GITHUB-TOKEN": token, "INPUT_PROVIDER": "local",
		"GITHUB_OUTPUT": filepath.Join(dir, "out"), "GITHUB_REPOSITORY": "acme/ml",
		"GITHUB_RUN_ID": "1", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_API_URL": "http://127.0.0.1:1",
	}
	tests := []struct {
		name  string
		unset []string
		set   map[string]string
		want  string
	}{
		{"no GITHUB_OUTPUT", []string{"GITHUB_OUTPUT"}, nil, "this runs as a GitHub Actions step"},
		{"no repository", []string{"GITHUB_REPOSITORY"}, nil, "this runs as a GitHub Actions step"},
		{"start without a run id", []string{"GITHUB_RUN_ID"}, map[string]string{"INPUT_MODE": "start"}, "this runs as a GitHub Actions step"},
		{"an output file that cannot be written", nil, map[string]string{"GITHUB_OUTPUT": filepath.Join(dir, "missing", "out")}, "unable to write command to the environment file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range runner {
				env[k] = v
			}
			for _, k := range tt.unset {
				delete(env, k)
			}
			for k, v := range tt.set {
				env[k] = v
			}
			var stdout, stderr bytes.Buffer
			err := Run(context.Background(), Env{
				Getenv: func(k string) string { return env[k] }, Stdout: &stdout, Stderr: &stderr,
				NewProvider: func(string, Keys, *slog.Logger) (provisioner.Provider, error) {
					return nil, errors.New("no provider in this test")
				},
				PrintGC: func(io.Writer, *provisioner.GCPlan, bool) error { return nil },
			})
			if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if !strings.Contains(stdout.String(), "::error::") || strings.Count(stdout.String(), token) != 1 {
				t.Errorf("stdout:\n%s", stdout.String())
			}
		})
	}
}
