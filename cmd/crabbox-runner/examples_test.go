package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/crabbox/crabbox-runner/action/actiontest"
	"github.com/crabbox/crabbox-runner/internal/config"
)

// serveNeeds is what `serve` (and doctor) validate the configuration for.
var serveNeeds = config.Needs{Webhook: true, GitHub: true, Classes: true, Runner: true, Deployment: true}

// TestExamplesConfig loads examples/crabbox-runner.yaml as serve would,
// with the secrets it says come from the environment, and validates it.
func TestExamplesConfig(t *testing.T) {
	path := filepath.Join(actiontest.RepoRoot(), "examples", "crabbox-runner.yaml")
	env := map[string]string{
		"CRABBOX_CONFIG":                 path,
		"CRABBOX_WEBHOOK_SECRET":         "example-webhook-secret",
		"CRABBOX_GITHUB_APP_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\nexample\n-----END RSA PRIVATE KEY-----",
		"VAST_API_KEY":                   "example-vast-key",
		"LAMBDA_API_KEY":                 "example-lambda-key",
	}
	cfg, err := config.Load(config.Overrides{}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(serveNeeds); err != nil {
		t.Fatal(err)
	}
	if cfg.Source != path || len(cfg.Classes) < 2 || cfg.GitHub.AppID == 0 {
		t.Errorf("loaded %s with %d classes, app id %d", cfg.Source, len(cfg.Classes), cfg.GitHub.AppID)
	}
	// The example names its secret files, and holds no secret itself.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range env {
		if strings.Contains(string(data), v) {
			t.Errorf("the example contains a secret value %q", v)
		}
	}
}

// TestExamplesSystemd checks the unit with systemd-analyze: verify (syntax,
// unknown keys, specifiers) and security (its exposure score). verify also
// wants ExecStart's binary to exist, so it checks a copy whose ExecStart is
// a binary that exists here.
func TestExamplesSystemd(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join(actiontest.RepoRoot(), "examples", "systemd", "crabbox-runner.service"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(unit)
	for _, must := range []string{
		"ExecStart=/usr/local/bin/crabbox-runner serve\n", "DynamicUser=yes\n", "StateDirectory=crabbox-runner\n",
		"NoNewPrivileges=yes\n", "ProtectSystem=strict\n", "ProtectHome=yes\n", "CapabilityBoundingSet=\n",
		"LoadCredential=webhook-secret:", "Environment=CRABBOX_WEBHOOK_SECRET_FILE=%d/webhook-secret\n",
		"Environment=CRABBOX_DATABASE_URL=sqlite:/var/lib/crabbox-runner/",
	} {
		if !strings.Contains(text, must) {
			t.Errorf("unit lacks %q", strings.TrimSpace(must))
		}
	}
	// Every credential it loads is used by a *_FILE variable, and no
	// variable holds a secret itself.
	for _, line := range strings.Split(text, "\n") {
		if name, ok := strings.CutPrefix(line, "LoadCredential="); ok {
			name, _, _ = strings.Cut(name, ":")
			if !strings.Contains(text, "_FILE=%d/"+name+"\n") {
				t.Errorf("credential %s is loaded but no *_FILE variable points at it", name)
			}
		}
		if kv, ok := strings.CutPrefix(line, "Environment="); ok {
			k, _, _ := strings.Cut(kv, "=")
			if isSecretVar(k) {
				t.Errorf("the unit sets the secret %s itself; use a credential and %s_FILE", k, k)
			}
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is missing and CI is set: install systemd")
		}
		t.Skip("systemd-analyze is missing: the unit is not verified")
	}
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "crabbox-runner.service")
	stub, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copyPath, []byte(strings.Replace(text, "ExecStart=/usr/local/bin/crabbox-runner ", "ExecStart="+stub+" ", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
	if err != nil || strings.Contains(string(out), "crabbox-runner.service") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// systemd scores every sandboxing setting; under 2 is "OK", the best band.
	out, err = exec.Command(analyze, "security", "--offline=true", "--threshold=20", copyPath).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: %v\n%s", err, out)
	}
}

// isSecretVar reports whether an environment variable holds a secret
// itself (rather than naming a file with one).
func isSecretVar(k string) bool {
	if strings.HasSuffix(k, "_FILE") {
		return false
	}
	return strings.HasSuffix(k, "_SECRET") || strings.HasSuffix(k, "_KEY") || strings.HasSuffix(k, "_TOKEN") ||
		strings.HasSuffix(k, "_PRIVATE_KEY")
}

// k8s is a Kubernetes object as parsed YAML.
type k8s map[string]any

func (o k8s) kind() string { s, _ := o["kind"].(string); return s }
func (o k8s) name() string { s, _ := dig(o, "metadata", "name").(string); return s }

// dig walks maps by key and lists by index.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				if o, ok2 := v.(k8s); ok2 {
					m = o
				} else {
					return nil
				}
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func digStr(v any, path ...any) string { s, _ := dig(v, path...).(string); return s }

func loadK8s(t *testing.T, dir string) map[string]k8s {
	t.Helper()
	kust, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(kust, &k); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !slices.Contains(k.Resources, b) {
			t.Errorf("%s is not in kustomization.yaml's resources", b)
		}
	}
	objs := map[string]k8s{}
	for _, r := range k.Resources {
		data, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			t.Fatalf("kustomization.yaml lists %s: %v", r, err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var o map[string]any
			if err := dec.Decode(&o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", r, err)
			}
			obj := k8s(o)
			if obj.kind() == "" || obj.name() == "" || o["apiVersion"] == nil {
				t.Fatalf("%s: an object without apiVersion, kind or name", r)
			}
			if _, dup := objs[obj.kind()]; dup {
				t.Fatalf("two %s objects; the test expects one of each kind", obj.kind())
			}
			objs[obj.kind()] = obj
		}
	}
	return objs
}

// TestExamplesKubernetes parses examples/kubernetes and checks what makes
// the deployment work and safe: two replicas on PostgreSQL from a Secret,
// probes on /healthz and /readyz, a non-root, read-only container, secrets
// as files, the Service and Ingress wired to the container's port; and
// that the ConfigMap's config, with the env and files the pod gets, passes
// serve's validation.
func TestExamplesKubernetes(t *testing.T) {
	dir := filepath.Join(actiontest.RepoRoot(), "examples", "kubernetes")
	objs := loadK8s(t, dir)
	for _, kind := range []string{"Deployment", "Service", "Secret", "ConfigMap", "PodDisruptionBudget", "Ingress"} {
		if objs[kind] == nil {
			t.Fatalf("no %s", kind)
		}
	}
	dep, svc, sec, cm := objs["Deployment"], objs["Service"], objs["Secret"], objs["ConfigMap"]

	if r, _ := dig(dep, "spec", "replicas").(int); r != 2 {
		t.Errorf("replicas %v, want 2", dig(dep, "spec", "replicas"))
	}
	pod := dig(dep, "spec", "template", "spec")
	podLabels, _ := dig(dep, "spec", "template", "metadata", "labels").(map[string]any)
	matches := func(sel any) bool {
		m, _ := sel.(map[string]any)
		if len(m) == 0 {
			return false
		}
		for k, v := range m {
			if podLabels[k] != v {
				return false
			}
		}
		return true
	}
	if !matches(dig(dep, "spec", "selector", "matchLabels")) || !matches(dig(svc, "spec", "selector")) ||
		!matches(dig(objs["PodDisruptionBudget"], "spec", "selector", "matchLabels")) {
		t.Error("the Deployment's, Service's and PodDisruptionBudget's selectors do not all match the pod's labels")
	}
	if dig(pod, "enableServiceLinks") != false || dig(pod, "automountServiceAccountToken") != false {
		t.Error("want enableServiceLinks: false and automountServiceAccountToken: false")
	}
	if g, _ := dig(pod, "terminationGracePeriodSeconds").(int); g <= 30 {
		t.Errorf("terminationGracePeriodSeconds %d: serve takes up to 30 s to stop", g)
	}
	if dig(pod, "securityContext", "runAsNonRoot") != true || dig(pod, "securityContext", "runAsUser") == 0 ||
		digStr(pod, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("pod securityContext %v", dig(pod, "securityContext"))
	}
	containers, _ := dig(pod, "containers").([]any)
	if len(containers) != 1 {
		t.Fatalf("want one container, got %d", len(containers))
	}
	c := containers[0]
	image := digStr(c, "image")
	if !strings.HasPrefix(image, "ghcr.io/crabbox/crabbox-runner:") {
		t.Errorf("image %s, want the release workflow's ghcr.io/crabbox/crabbox-runner", image)
	}
	sc := dig(c, "securityContext")
	if dig(sc, "readOnlyRootFilesystem") != true || dig(sc, "allowPrivilegeEscalation") != false ||
		!slices.Contains(anyStrings(dig(sc, "capabilities", "drop")), "ALL") {
		t.Errorf("container securityContext %v", sc)
	}
	if digStr(c, "ports", 0, "name") != "http" || dig(c, "ports", 0, "containerPort") != 8080 {
		t.Errorf("ports %v, want http 8080", dig(c, "ports"))
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if digStr(c, probe, "httpGet", "path") != path || digStr(c, probe, "httpGet", "port") != "http" {
			t.Errorf("%s %v, want GET %s on http", probe, dig(c, probe), path)
		}
	}
	if digStr(svc, "spec", "ports", 0, "targetPort") != "http" {
		t.Errorf("Service targetPort %v, want http", dig(svc, "spec", "ports", 0, "targetPort"))
	}
	ing := objs["Ingress"]
	paths, _ := dig(ing, "spec", "rules", 0, "http", "paths").([]any)
	if len(paths) != 1 || digStr(paths[0], "path") != "/webhook" || digStr(paths[0], "pathType") != "Exact" ||
		digStr(paths[0], "backend", "service", "name") != svc.name() {
		t.Errorf("Ingress paths %v: want exactly /webhook to the Service", paths)
	}

	// What the pod sees: its env, with secretKeyRefs resolved, and its
	// mounted files, put in a temp dir.
	secretData, _ := dig(sec, "stringData").(map[string]any)
	root := t.TempDir()
	mounts := map[string]string{} // mountPath → temp dir
	volumes, _ := dig(pod, "volumes").([]any)
	for _, m := range anyList(dig(c, "volumeMounts")) {
		if dig(m, "readOnly") != true && digStr(m, "mountPath") != "/tmp" {
			t.Errorf("mount %s is writable", digStr(m, "mountPath"))
		}
		var vol any
		for _, v := range volumes {
			if digStr(v, "name") == digStr(m, "name") {
				vol = v
			}
		}
		if vol == nil {
			t.Fatalf("mount %s: no volume %s", digStr(m, "mountPath"), digStr(m, "name"))
		}
		d := filepath.Join(root, digStr(m, "name"))
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		mounts[digStr(m, "mountPath")] = d
		switch {
		case dig(vol, "configMap") != nil:
			if digStr(vol, "configMap", "name") != cm.name() {
				t.Errorf("volume %s: configMap %s", digStr(vol, "name"), digStr(vol, "configMap", "name"))
			}
			for k, v := range dig(cm, "data").(map[string]any) {
				os.WriteFile(filepath.Join(d, k), []byte(v.(string)), 0o600)
			}
		case dig(vol, "secret") != nil:
			if digStr(vol, "secret", "secretName") != sec.name() {
				t.Errorf("volume %s: secret %s", digStr(vol, "name"), digStr(vol, "secret", "secretName"))
			}
			for _, it := range anyList(dig(vol, "secret", "items")) {
				v, ok := secretData[digStr(it, "key")].(string)
				if !ok {
					t.Errorf("volume %s: the Secret has no key %s", digStr(vol, "name"), digStr(it, "key"))
				}
				os.WriteFile(filepath.Join(d, digStr(it, "path")), []byte(v), 0o600)
			}
		}
	}
	env := map[string]string{}
	for _, e := range anyList(dig(c, "env")) {
		name := digStr(e, "name")
		if ref := dig(e, "valueFrom", "secretKeyRef"); ref != nil {
			v, ok := secretData[digStr(ref, "key")].(string)
			if digStr(ref, "name") != sec.name() || !ok {
				t.Errorf("env %s: secretKeyRef %v is not in the Secret", name, ref)
			}
			env[name] = v
			continue
		}
		if isSecretVar(name) {
			t.Errorf("env %s holds a secret in the manifest; use a file or a secretKeyRef", name)
		}
		v := digStr(e, "value")
		for mp, d := range mounts {
			if after, ok := strings.CutPrefix(v, mp+"/"); ok {
				v = filepath.Join(d, after)
				if _, err := os.Stat(v); err != nil {
					t.Errorf("env %s: %s is not in the mounted files", name, digStr(e, "value"))
				}
				break
			}
		}
		env[name] = v
	}
	if dig(c, "env") == nil || !strings.HasPrefix(env["CRABBOX_DATABASE_URL"], "postgres://") {
		t.Errorf("CRABBOX_DATABASE_URL %q: replicas need PostgreSQL, from the Secret", env["CRABBOX_DATABASE_URL"])
	}
	cfg, err := config.Load(config.Overrides{}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(serveNeeds); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":8080" {
		t.Errorf("serve would listen on %s, the container port is 8080", cfg.Listen)
	}
	// Closed by default: on :8080 without a status token, /metrics answers
	// 403 there; Prometheus scrapes the metrics listener, which only it
	// may reach.
	if cfg.StatusToken == "" {
		_, mport, _ := net.SplitHostPort(cfg.MetricsListen)
		annotations := dig(dep, "spec", "template", "metadata", "annotations")
		if digStr(c, "ports", 1, "name") != "metrics" || fmt.Sprint(dig(c, "ports", 1, "containerPort")) != mport ||
			digStr(annotations, "prometheus.io/port") != mport {
			t.Errorf("metrics_listen %q, ports %v, annotations %v: Prometheus must scrape the metrics listener's port",
				cfg.MetricsListen, dig(c, "ports"), annotations)
		}
		np := objs["NetworkPolicy"]
		if np == nil || !matches(dig(np, "spec", "podSelector", "matchLabels")) {
			t.Fatal("no NetworkPolicy for the pods: the metrics port would be open to the cluster")
		}
		for _, rule := range anyList(dig(np, "spec", "ingress")) {
			for _, p := range anyList(dig(rule, "ports")) {
				if digStr(p, "port") == "metrics" && len(anyList(dig(rule, "from"))) == 0 {
					t.Error("the NetworkPolicy lets anyone reach the metrics port")
				}
			}
		}
	}

	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		// Offline: builds the kustomization as `kubectl apply -k` would.
		if out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput(); err != nil {
			t.Errorf("kubectl kustomize: %v\n%s", err, out)
		}
	}
}

func anyList(v any) []any { l, _ := v.([]any); return l }

func anyStrings(v any) []string {
	var out []string
	for _, x := range anyList(v) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}
