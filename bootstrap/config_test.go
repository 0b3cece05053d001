package bootstrap_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/crabbox/crabbox-runner/bootstrap"
)

const goodURL = "https://github.com/actions/runner/releases/download/v{version}/actions-runner-linux-{arch}-{version}.tar.gz"

var goodSHA = strings.Repeat("ab", 32)

func TestNewValidatesTheConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  bootstrap.Config
		want string
	}{
		{"no version", bootstrap.Config{RunnerURL: goodURL, RunnerSHA256: goodSHA}, "version is required"},
		{"odd version", bootstrap.Config{RunnerURL: goodURL, RunnerVersion: "2.3 0", RunnerSHA256: goodSHA}, "runner version"},
		{"no sha", bootstrap.Config{RunnerURL: goodURL, RunnerVersion: "2.330.0"}, "sha256 is required"},
		{"short sha", bootstrap.Config{RunnerURL: goodURL, RunnerVersion: "2.330.0", RunnerSHA256: "abc"}, "64 hexadecimal"},
		{"no url", bootstrap.Config{RunnerVersion: "2.330.0", RunnerSHA256: goodSHA}, "URL is required"},
		{"ftp url", bootstrap.Config{RunnerURL: "ftp://x/{version}", RunnerVersion: "2.330.0", RunnerSHA256: goodSHA}, "http(s)"},
		{"url with user", bootstrap.Config{RunnerURL: "https://u:p@x/{version}", RunnerVersion: "2.330.0", RunnerSHA256: goodSHA}, "credentials"},
		{"negative timeout", bootstrap.Config{RunnerURL: goodURL, RunnerVersion: "2.330.0", RunnerSHA256: goodSHA, ConnectTimeout: -1}, "negative"},
	} {
		_, err := bootstrap.New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
	if _, err := bootstrap.New(bootstrap.Config{RunnerURL: goodURL, RunnerVersion: "2.330.0", RunnerSHA256: strings.ToUpper(goodSHA)}); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

func newBootstrapper(t *testing.T) *bootstrap.Bootstrapper {
	t.Helper()
	b, err := bootstrap.New(bootstrap.Config{RunnerURL: goodURL, RunnerVersion: "2.330.0", RunnerSHA256: goodSHA})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewCredentials(t *testing.T) {
	b := newBootstrapper(t)
	c, err := b.NewCredentials(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(c.ClientPublicKey))
	if err != nil || pub.Type() != ssh.KeyAlgoED25519 || comment != "crabbox" {
		t.Errorf("client public key %q: %v", c.ClientPublicKey, err)
	}
	signer, err := ssh.ParsePrivateKey(c.ClientPrivatePEM)
	if err != nil {
		t.Fatal(err)
	}
	if string(signer.PublicKey().Marshal()) != string(pub.Marshal()) {
		t.Error("client private and public keys do not match")
	}
	if c.HostKey == nil {
		t.Fatal("no host key")
	}
	hostPub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.HostKey.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.ParsePrivateKey(c.HostKey.PrivatePEM)
	if err != nil || string(hostSigner.PublicKey().Marshal()) != string(hostPub.Marshal()) {
		t.Errorf("host key pair does not match: %v", err)
	}

	c2, err := b.NewCredentials(nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if c2.HostKey != nil || c2.ClientPublicKey == c.ClientPublicKey {
		t.Error("credentials without a host key: got a host key, or the same client key twice")
	}
}

func TestUserDataPassesCloudInitSchema(t *testing.T) {
	b := newBootstrapper(t)
	c, err := b.NewCredentials(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	ud, err := b.UserData(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ud, "#cloud-config\n") {
		t.Fatalf("user-data does not start with #cloud-config:\n%s", ud)
	}
	var doc struct {
		SSHDeleteKeys     bool              `yaml:"ssh_deletekeys"`
		SSHKeys           map[string]string `yaml:"ssh_keys"`
		SSHAuthorizedKeys []string          `yaml:"ssh_authorized_keys"`
		BootCmd           [][]string        `yaml:"bootcmd"`
		RunCmd            [][]string        `yaml:"runcmd"`
	}
	if err := yaml.Unmarshal([]byte(ud), &doc); err != nil {
		t.Fatal(err)
	}
	if !doc.SSHDeleteKeys || doc.SSHKeys["ed25519_private"] != string(c.HostKey.PrivatePEM) ||
		doc.SSHKeys["ed25519_public"] != c.HostKey.PublicKey {
		t.Error("user-data does not install the host key pair")
	}
	if len(doc.SSHAuthorizedKeys) != 1 || doc.SSHAuthorizedKeys[0] != c.ClientPublicKey {
		t.Errorf("ssh_authorized_keys = %q", doc.SSHAuthorizedKeys)
	}
	if len(doc.RunCmd) == 0 || !strings.Contains(strings.Join(doc.RunCmd[0], " "), "crabbox") {
		t.Errorf("runcmd %q", doc.RunCmd)
	}
	// The prefetch starts in the network stage (bootcmd), and nothing
	// makes the final stage run apt-get update before runcmd.
	if len(doc.BootCmd) != 1 || !strings.Contains(strings.Join(doc.BootCmd[0], " "), "prefetch.sh") {
		t.Errorf("bootcmd %q", doc.BootCmd)
	} else if out, err := exec.Command("bash", "-n", "-c", doc.BootCmd[0][len(doc.BootCmd[0])-1]).CombinedOutput(); err != nil {
		t.Errorf("bootcmd is not valid shell: %v\n%s", err, out)
	}
	var keys map[string]any
	if err := yaml.Unmarshal([]byte(ud), &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"package_update", "package_upgrade", "apt_update", "apt_upgrade", "packages"} {
		if _, ok := keys[k]; ok {
			t.Errorf("user-data has %s: cloud-init's final stage would run apt-get update before runcmd", k)
		}
	}
	if strings.Contains(ud, string(c.ClientPrivatePEM)) {
		t.Error("user-data carries the client private key")
	}

	c.HostKey = nil
	noHost, err := b.UserData(c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(noHost, "ssh_keys") || strings.Contains(noHost, "ssh_deletekeys") {
		t.Errorf("user-data without a host key touches host keys:\n%s", noHost)
	}

	if _, err := exec.LookPath("cloud-init"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("cloud-init is missing in CI: install it (apt-get install cloud-init)")
		}
		t.Skip("cloud-init not installed; install it to check the schema")
	}
	for name, data := range map[string]string{"with-host-key": ud, "without-host-key": noHost} {
		f := filepath.Join(t.TempDir(), name+".yaml")
		if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("cloud-init", "schema", "--config-file", f).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Valid") {
			t.Errorf("cloud-init schema (%s): %v\n%s", name, err, out)
		}
	}
}

func TestOnStart(t *testing.T) {
	b := newBootstrapper(t)
	c, err := b.NewCredentials(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	s := b.OnStart(c)
	for _, want := range []string{"~/.no_auto_tmux", "curl", "crabbox"} {
		if !strings.Contains(s, want) {
			t.Errorf("onstart lacks %q:\n%s", want, s)
		}
	}
	assertNoSecrets(t, []string{s}, string(c.ClientPrivatePEM), string(c.HostKey.PrivatePEM))
	out, err := exec.Command("bash", "-n", "-c", s).CombinedOutput()
	if err != nil {
		t.Errorf("onstart is not valid shell: %v\n%s", err, out)
	}
}

func TestDerivedCredentials(t *testing.T) {
	b := newBootstrapper(t)
	seed := []byte("0123456789abcdef0123456789abcdef")
	a, err := b.NewCredentials(seed, true)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := b.NewCredentials(seed, true)
	other, _ := b.NewCredentials([]byte("another seed, another lease....."), true)
	if a.ClientPublicKey != again.ClientPublicKey || a.HostKey.PublicKey != again.HostKey.PublicKey {
		t.Fatal("the same seed gave different keys")
	}
	if a.ClientPublicKey == other.ClientPublicKey || a.ClientPublicKey == a.HostKey.PublicKey {
		t.Fatal("keys are not separated by seed and purpose")
	}
	r1, _ := b.NewCredentials(nil, false)
	r2, _ := b.NewCredentials(nil, false)
	if r1.ClientPublicKey == r2.ClientPublicKey {
		t.Fatal("random keys repeat")
	}
}
