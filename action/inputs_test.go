package action

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-githubactions"
)

func actionWith(inputs map[string]string) *githubactions.Action {
	env := map[string]string{}
	for k, v := range inputs {
		env["INPUT_"+strings.ToUpper(k)] = v
	}
	return githubactions.New(githubactions.WithGetenv(func(k string) string { return env[k] }))
}

func TestParseInputs(t *testing.T) {
	base := func(kv ...string) map[string]string {
		m := map[string]string{"github-token": "tok-12345678"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name    string
		inputs  map[string]string
		check   func(t *testing.T, in *Inputs)
		wantErr string
	}{
		{"start with defaults", base("mode", "start"), func(t *testing.T, in *Inputs) {
			want := &Inputs{Mode: "start", GitHubToken: "tok-12345678", GPUCount: 1, CheckGPU: true, Timeout: DefaultTimeout, BootTimeout: DefaultTimeout / 2,
				MaxLifetime: DefaultMaxLifetime, Deployment: DefaultDeployment, RunnerGroupID: 1}
			if !reflect.DeepEqual(in, want) {
				t.Errorf("got %+v\nwant %+v", in, want)
			}
		}, ""},
		{"start with everything", base("mode", "START", "provider", "vast, lambda,vast", "gpu", "H100", "gpu-count", "8",
			"min-gpu-memory", "80", "max-price", "$30.5", "disk", "200", "image", "pytorch/pytorch", "region", "us-east-1",
			"check-gpu", "false", "labels", "a100-pool\nteam-ml, team-ml", "timeout", "15", "max-lifetime", "2h30m",
			"deployment", "ml-gpu", "scope", "org", "runner-group-id", "3", "runner-version", "v2.330.0",
			"runner-sha256", strings.Repeat("AB", 32), "runner-sha256-arm64", strings.Repeat("CD", 32),
			"vast-api-key", "vk-12345678", "lambda-api-key", "lk-12345678"),
			func(t *testing.T, in *Inputs) {
				if in.Mode != "start" || !reflect.DeepEqual(in.Providers, []string{"vast", "lambda"}) || in.GPU != "H100" ||
					in.GPUCount != 8 || in.MinGPUMemory != 80 || in.MaxPrice != 30.5 || in.DiskGB != 200 || in.CheckGPU ||
					!reflect.DeepEqual(in.Labels, []string{"a100-pool", "team-ml"}) || in.Timeout != 15*time.Minute ||
					in.MaxLifetime != 150*time.Minute || in.Deployment != "ml-gpu" || !in.OrgScope || in.RunnerGroupID != 3 ||
					in.RunnerVersion != "2.330.0" || in.RunnerSHA256 != strings.Repeat("ab", 32) || in.RunnerSHA256Arm64 != strings.Repeat("cd", 32) {
					t.Errorf("got %+v", in)
				}
				if got := in.Secrets(); len(got) != 3 {
					t.Errorf("secrets %d", len(got))
				}
			}, ""},
		{"stop from the label", base("mode", "stop", "label", "crabbox-12-2-labcdefghjk"), func(t *testing.T, in *Inputs) {
			if in.LeaseID != "labcdefghjk" || in.Label != "crabbox-12-2-labcdefghjk" {
				t.Errorf("got %+v", in)
			}
		}, ""},
		{"stop from the lease id", base("mode", "stop", "lease-id", "labcdefghjk"), nil, ""},
		{"stop with both, agreeing", base("mode", "stop", "lease-id", "labcdefghjk", "label", "crabbox-12-2-labcdefghjk"), nil, ""},
		{"gc dry run", base("mode", "gc", "dry-run", "yes"), func(t *testing.T, in *Inputs) {
			if !in.DryRun {
				t.Error("dry-run not read")
			}
		}, ""},
		{"App auth", map[string]string{"mode": "gc", "github-app-id": "12", "github-app-private-key": "-----BEGIN KEY-----"}, nil, ""},

		{"no mode", base(), nil, "input mode: required"},
		{"unknown mode", base("mode", "pause"), nil, `input mode: "pause" is not start, stop or gc`},
		{"no credentials", map[string]string{"mode": "start"}, nil, "input github-token: required"},
		{"token and App", base("mode", "start", "github-app-id", "1", "github-app-private-key", "k"), nil, "not both"},
		{"App id alone", map[string]string{"mode": "start", "github-app-id": "1"}, nil, "input github-app-private-key: required"},
		{"App key alone", map[string]string{"mode": "start", "github-app-private-key": "k"}, nil, "input github-app-id: required"},
		{"bad App id", map[string]string{"mode": "start", "github-app-id": "x"}, nil, `input github-app-id: "x" is not a positive integer`},
		{"unknown provider", base("mode", "start", "provider", "aws"), nil, `input provider: unknown provider "aws"`},
		{"bad deployment", base("mode", "start", "deployment", "ML_GPU"), nil, "input deployment"},
		{"bad scope", base("mode", "start", "scope", "enterprise"), nil, "input scope"},
		{"zero GPUs", base("mode", "start", "gpu-count", "0"), nil, "input gpu-count"},
		{"negative price", base("mode", "start", "max-price", "-1"), nil, "input max-price"},
		{"NaN memory", base("mode", "start", "min-gpu-memory", "NaN"), nil, "input min-gpu-memory"},
		{"bad bool", base("mode", "start", "check-gpu", "maybe"), nil, "input check-gpu"},
		{"bad label", base("mode", "start", "labels", "ok, not ok"), nil, `input labels: "not ok"`},
		{"bad timeout", base("mode", "start", "timeout", "soon"), nil, "input timeout"},
		{"timeout not shorter", base("mode", "start", "timeout", "6h"), nil, "is not shorter than max-lifetime"},
		{"boot timeout by default", base("mode", "start", "timeout", "12m"), func(t *testing.T, in *Inputs) {
			if in.BootTimeout != 6*time.Minute {
				t.Errorf("boot-timeout %s", in.BootTimeout)
			}
		}, ""},
		{"boot timeout", base("mode", "start", "boot-timeout", "4m"), func(t *testing.T, in *Inputs) {
			if in.BootTimeout != 4*time.Minute {
				t.Errorf("boot-timeout %s", in.BootTimeout)
			}
		}, ""},
		{"boot timeout as long as timeout", base("mode", "start", "boot-timeout", "10m"), func(t *testing.T, in *Inputs) {
			if in.BootTimeout != in.Timeout {
				t.Errorf("boot-timeout %s", in.BootTimeout)
			}
		}, ""},
		{"bad boot timeout", base("mode", "start", "boot-timeout", "0s"), nil, "input boot-timeout"},
		{"boot timeout too long", base("mode", "start", "boot-timeout", "11m"), nil, "boot-timeout: 11m0s is longer than timeout 10m0s"},
		{"hedge", base("mode", "start", "hedge-after", "90s"), func(t *testing.T, in *Inputs) {
			if in.HedgeAfter != 90*time.Second {
				t.Errorf("hedge-after %s", in.HedgeAfter)
			}
		}, ""},
		{"bad hedge", base("mode", "start", "hedge-after", "-1m"), nil, "input hedge-after"},
		{"hedge not shorter", base("mode", "start", "hedge-after", "10m"), nil, "hedge-after: 10m0s is not shorter than timeout"},
		{"sha without version", base("mode", "start", "runner-sha256", strings.Repeat("a", 64)), nil, "input runner-version: give"},
		{"bad version", base("mode", "start", "runner-version", "latest", "runner-sha256", strings.Repeat("a", 64)), nil, "input runner-version"},
		{"bad sha", base("mode", "start", "runner-version", "2.330.0", "runner-sha256", "abc"), nil, "input runner-sha256"},
		{"bad arm64 sha", base("mode", "start", "runner-version", "2.330.0", "runner-sha256-arm64", "abc"), nil, "input runner-sha256-arm64"},
		{"arm64 sha without version", base("mode", "start", "runner-sha256-arm64", strings.Repeat("a", 64)), nil, "input runner-version: give"},
		{"url without version", base("mode", "start", "runner-url", "https://mirror/{version}"), nil, "input runner-url"},
		{"stop with nothing", base("mode", "stop"), nil, "input lease-id: stop needs lease-id or label"},
		{"stop with a foreign label", base("mode", "stop", "label", "self-hosted"), nil, "input label"},
		{"stop with a bad lease id", base("mode", "stop", "lease-id", "../x"), nil, "input lease-id"},
		{"stop with disagreeing ids", base("mode", "stop", "lease-id", "lzzzzzzzzzz", "label", "crabbox-12-2-labcdefghjk"), nil, "is not the lease of label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := ParseInputs(actionWith(tt.inputs))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				for _, secret := range []string{"tok-12345678", "-----BEGIN"} {
					if strings.Contains(err.Error(), secret) {
						t.Fatalf("the error shows a secret: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, in)
			}
		})
	}
}

func TestProviderNames(t *testing.T) {
	tests := []struct {
		name    string
		in      Inputs
		want    []string
		wantErr string
	}{
		{"from the keys", Inputs{VastAPIKey: "v", LambdaAPIKey: "l"}, []string{"vast", "lambda"}, ""},
		{"one key", Inputs{LambdaAPIKey: "l"}, []string{"lambda"}, ""},
		{"asked for", Inputs{Providers: []string{"lambda"}, VastAPIKey: "v", LambdaAPIKey: "l"}, []string{"lambda"}, ""},
		{"local needs no key", Inputs{Providers: []string{"local"}}, []string{"local"}, ""},
		{"no key at all", Inputs{}, nil, "input provider: no provider"},
		{"asked without its key", Inputs{Providers: []string{"vast"}, LambdaAPIKey: "l"}, nil, "input vast-api-key: required with provider vast"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.ProviderNames()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestNames(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		n := NewNames("ml-gpu", 9876543210, 3)
		if !leaseIDRE.MatchString(n.LeaseID) || seen[n.LeaseID] {
			t.Fatalf("lease id %q", n.LeaseID)
		}
		seen[n.LeaseID] = true
		m := labelRE.FindStringSubmatch(n.Label)
		if m == nil || m[1] != n.LeaseID || !strings.HasPrefix(n.Label, "crabbox-9876543210-3-") {
			t.Fatalf("label %q does not give back lease %q", n.Label, n.LeaseID)
		}
		if n.RunnerName != "crabbox-ml-gpu-"+n.LeaseID || len(n.RunnerName) > 64 {
			t.Fatalf("runner name %q", n.RunnerName)
		}
	}
}
