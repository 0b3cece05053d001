package main

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/crabbox/crabbox-runner/action/actiontest"
)

// No Docker engine runs here, so these tests check what can be checked
// without one: the Dockerfile's stages and settings, the binary built with
// exactly its build command (static, version stamped), and the build
// context its .dockerignore leaves.

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Line  int
	Cmd   string            // upper case: FROM, RUN, COPY, …
	Flags map[string]string // --platform=…, --from=…, --mount=… (last wins)
	Args  string            // the rest, flags removed
}

// stage is a FROM and the instructions up to the next FROM.
type stage struct {
	Image, Name, Platform string
	Instr                 []instruction
}

type dockerfile struct {
	Args   map[string]string // ARGs before the first FROM, with defaults
	Stages []stage
}

// parseDockerfile reads the subset of the Dockerfile syntax that this
// repository's Dockerfile may use: comments and parser directives, line
// continuations with a backslash, leading --flags, exec (JSON) and shell
// forms. Anything it does not understand is an error, so the test cannot
// pass by misreading the file.
func parseDockerfile(t *testing.T, path string) *dockerfile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	df := &dockerfile{Args: map[string]string{}}
	known := []string{"FROM", "RUN", "COPY", "ARG", "ENV", "USER", "WORKDIR", "VOLUME", "EXPOSE", "ENTRYPOINT", "CMD", "LABEL", "HEALTHCHECK", "STOPSIGNAL"}
	sc := bufio.NewScanner(f)
	n, start := 0, 0
	var cur strings.Builder
	flush := func() {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return
		}
		word, rest, _ := strings.Cut(text, " ")
		in := instruction{Line: start, Cmd: strings.ToUpper(word), Flags: map[string]string{}}
		if !slices.Contains(known, in.Cmd) {
			t.Fatalf("Dockerfile:%d: instruction %s is not one this test knows", start, word)
		}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			flag, after, _ := strings.Cut(rest, " ")
			k, v, _ := strings.Cut(strings.TrimPrefix(flag, "--"), "=")
			in.Flags[k] = v
			rest = strings.TrimSpace(after)
		}
		in.Args = rest
		switch in.Cmd {
		case "FROM":
			st := stage{Platform: in.Flags["platform"]}
			fields := strings.Fields(rest)
			switch {
			case len(fields) == 1:
			case len(fields) == 3 && strings.EqualFold(fields[1], "AS"):
				st.Name = fields[2]
			default:
				t.Fatalf("Dockerfile:%d: FROM %s", start, rest)
			}
			st.Image = fields[0]
			df.Stages = append(df.Stages, st)
		case "ARG":
			if len(df.Stages) == 0 {
				k, v, _ := strings.Cut(rest, "=")
				df.Args[k] = v
				return
			}
			fallthrough
		default:
			if len(df.Stages) == 0 {
				t.Fatalf("Dockerfile:%d: %s before the first FROM", start, in.Cmd)
			}
			st := &df.Stages[len(df.Stages)-1]
			st.Instr = append(st.Instr, in)
		}
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue // comments and directives, also inside continuations
		}
		if cur.Len() == 0 {
			start = n
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), "\\"); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur.Len() > 0 {
		t.Fatal("Dockerfile ends inside a continued line")
	}
	return df
}

// find returns the instructions of a stage with this command.
func (s *stage) find(cmd string) []instruction {
	var out []instruction
	for _, in := range s.Instr {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// last is the last instruction with this command; it fails when none.
func (s *stage) last(t *testing.T, cmd string) instruction {
	t.Helper()
	all := s.find(cmd)
	if len(all) == 0 {
		t.Fatalf("final stage has no %s", cmd)
	}
	return all[len(all)-1]
}

func execForm(t *testing.T, in instruction) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(in.Args), &v); err != nil {
		t.Fatalf("Dockerfile:%d: %s is not in exec (JSON) form: %s", in.Line, in.Cmd, in.Args)
	}
	return v
}

// argDefaults are the ARG defaults visible in a stage (global ARGs the
// stage redeclares without a value keep the global default).
func (df *dockerfile) argDefaults(s *stage) map[string]string {
	out := map[string]string{}
	for _, in := range s.find("ARG") {
		k, v, ok := strings.Cut(in.Args, "=")
		if !ok {
			v = df.Args[k]
		}
		out[k] = v
	}
	return out
}

var (
	dockerOnce sync.Once
	dockerDF   *dockerfile
)

func repoDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	dockerOnce.Do(func() { dockerDF = parseDockerfile(t, filepath.Join(actiontest.RepoRoot(), "Dockerfile")) })
	if dockerDF == nil {
		t.Fatal("Dockerfile did not parse")
	}
	return dockerDF
}

// goBuildCommand is the builder stage's RUN that runs go build, without
// its --mount flags, and the stage's ARG defaults.
func goBuildCommand(t *testing.T, df *dockerfile) (string, map[string]string) {
	t.Helper()
	for i := range df.Stages {
		s := &df.Stages[i]
		for _, in := range s.find("RUN") {
			if strings.Contains(in.Args, "go build") {
				return in.Args, df.argDefaults(s)
			}
		}
	}
	t.Fatal("no RUN with go build in the Dockerfile")
	return "", nil
}

// needTool skips the test when a tool is missing, and fails it in CI.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing and CI is set: install it", name)
		}
		t.Skipf("%s is missing: install it to run this test", name)
	}
	return path
}

const dockerTestVersion = "v0.0.0-dockerfile-test"

// builtBinary builds crabbox-runner for this machine with exactly the
// Dockerfile's build command, run by sh in the repository as the builder
// stage runs it in its copy, and returns its path. Only the output
// directory differs: /out/ is the Dockerfile's, the test's temp directory
// here. (The Go build cache makes a second build in one run a link.)
func builtBinary(t *testing.T) string {
	t.Helper()
	needTool(t, "go")
	cmdline, args := goBuildCommand(t, repoDockerfile(t))
	if !strings.Contains(cmdline, "-o /out/crabbox-runner ") {
		t.Fatalf("the go build command does not write /out/crabbox-runner: %s", cmdline)
	}
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", strings.Replace(cmdline, "/out/", dir+"/", 1))
	cmd.Dir = actiontest.RepoRoot()
	cmd.Env = os.Environ()
	for k, v := range args {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// What buildx passes for this machine, and the release's version.
	cmd.Env = append(cmd.Env, "TARGETOS="+runtime.GOOS, "TARGETARCH="+runtime.GOARCH, "VERSION="+dockerTestVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build as the Dockerfile runs it: %v\n%s", err, out)
	}
	return filepath.Join(dir, "crabbox-runner")
}

func TestDockerfile(t *testing.T) {
	df := repoDockerfile(t)
	if len(df.Stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stages", len(df.Stages))
	}

	// The builder: Go from go.mod's minor version, cross-compiling on the
	// build platform.
	build := &df.Stages[0]
	goMod, err := os.ReadFile(filepath.Join(actiontest.RepoRoot(), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(goMod)
	image := build.Image
	for k, v := range df.Args {
		image = strings.ReplaceAll(image, "${"+k+"}", v)
	}
	if goVer == nil || !strings.HasPrefix(image, "golang:"+string(goVer[1])) {
		t.Errorf("builder image %s (%s), want golang:%s… as in go.mod", build.Image, image, goVer[1])
	}
	if build.Platform != "$BUILDPLATFORM" {
		t.Errorf("builder platform %q, want $BUILDPLATFORM (cross-compile, no emulation)", build.Platform)
	}

	cmdline, _ := goBuildCommand(t, df)
	for _, must := range []string{"CGO_ENABLED=0", "GOOS=$TARGETOS", "GOARCH=$TARGETARCH", " -trimpath ", `-X main.version=$VERSION`, "./cmd/crabbox-runner"} {
		if !strings.Contains(cmdline, must) {
			t.Errorf("go build command lacks %q: %s", must, cmdline)
		}
	}
	// The same flags as the release binaries that action.yml downloads.
	flags := regexp.MustCompile(`go build (.*?) -o `)
	release, err := os.ReadFile(filepath.Join(actiontest.RepoRoot(), ".github", "workflows", "release.yml"))
	if err != nil {
		t.Fatal(err)
	}
	relCmd := strings.Join(strings.Fields(strings.ReplaceAll(string(release), "\\\n", " ")), " ")
	mDocker, mRelease := flags.FindStringSubmatch(cmdline), flags.FindStringSubmatch(relCmd)
	if mDocker == nil || mRelease == nil || strings.Join(strings.Fields(mDocker[1]), " ") != mRelease[1] {
		t.Errorf("go build flags differ:\n  Dockerfile:  %v\n  release.yml: %v", mDocker, mRelease)
	}

	// The final stage: small, no shell needed, non-root, serve by default.
	final := &df.Stages[len(df.Stages)-1]
	if !strings.HasPrefix(final.Image, "gcr.io/distroless/static") && final.Image != "scratch" {
		t.Errorf("final image %s, want distroless/static or scratch", final.Image)
	}
	if strings.HasPrefix(final.Image, "gcr.io/distroless/") && !strings.HasSuffix(final.Image, ":nonroot") {
		t.Errorf("final image %s: use the :nonroot variant", final.Image)
	}
	if runs := final.find("RUN"); len(runs) > 0 {
		t.Errorf("Dockerfile:%d: RUN in the final stage (no shell there; and it would need emulation per platform)", runs[0].Line)
	}
	user := final.last(t, "USER").Args
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "0" || uid == "root" {
		t.Errorf("USER %q: want a non-root user", user)
	}

	entry := execForm(t, final.last(t, "ENTRYPOINT"))
	if len(entry) != 1 || filepath.Base(entry[0]) != "crabbox-runner" {
		t.Errorf("ENTRYPOINT %q, want the crabbox-runner binary alone", entry)
	}
	copied := false
	for _, c := range final.find("COPY") {
		fields := strings.Fields(c.Args)
		if c.Flags["from"] == build.Name && len(fields) == 2 && fields[1] == entry[0] {
			copied = true
		}
	}
	if !copied {
		t.Errorf("no COPY --from=%s puts the binary at %s", build.Name, entry[0])
	}
	if cmd := execForm(t, final.last(t, "CMD")); !slices.Equal(cmd, []string{"serve"}) {
		t.Errorf("CMD %q, want [\"serve\"]", cmd)
	}
	if expose := final.last(t, "EXPOSE").Args; expose != "8080" {
		t.Errorf("EXPOSE %s, want 8080 (the default listen address)", expose)
	}

	// The SQLite default lives on the volume, which the user can write.
	env := map[string]string{}
	for _, in := range final.find("ENV") {
		k, v, _ := strings.Cut(in.Args, "=")
		env[k] = v
	}
	db := env["CRABBOX_DATABASE_URL"]
	if db != "sqlite:/data/crabbox-runner.db" {
		t.Errorf("ENV CRABBOX_DATABASE_URL=%q, want sqlite:/data/crabbox-runner.db", db)
	}
	if vols := execForm(t, final.last(t, "VOLUME")); !slices.Contains(vols, "/data") {
		t.Errorf("VOLUME %q, want /data", vols)
	}
	owned := false
	for _, c := range final.find("COPY") {
		fields := strings.Fields(c.Args)
		if len(fields) == 2 && fields[1] == "/data" && c.Flags["chown"] == user {
			owned = true
		}
	}
	if !owned {
		t.Errorf("/data is not created owned by the image's user %s (a new volume would not be writable)", user)
	}
	for _, hc := range final.find("HEALTHCHECK") {
		if !strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(hc.Args, "CMD")), "[") {
			t.Errorf("Dockerfile:%d: HEALTHCHECK in shell form, but the image has no shell", hc.Line)
		}
	}
}

// TestDockerfileBinaryIsStatic builds the binary as the Dockerfile does and
// checks that it runs on an image with no libc: no program interpreter, no
// dynamic section; and that the version reached it.
func TestDockerfileBinaryIsStatic(t *testing.T) {
	bin := builtBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s has a %s program header: not static", bin, p.Type)
		}
	}
	for _, name := range []string{".interp", ".dynamic", ".dynsym"} {
		if f.Section(name) != nil {
			t.Errorf("%s has a %s section: not static", bin, name)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", bin, libs)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "crabbox-runner "+dockerTestVersion+" ") {
		t.Errorf("version: %v %s, want %s", err, out, dockerTestVersion)
	}
}

// dockerignored reports whether a path (slash-separated, relative to the
// context) is excluded by the .dockerignore patterns, with Docker's
// matching: * and ? within a path element, ** across elements, a pattern
// also excludes what lies under a matched directory, ! re-includes, the
// last matching pattern wins.
func dockerignored(patterns []string, path string) bool {
	ignored := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); i++ {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case p[i] == '*':
				re.WriteString("[^/]*")
			case p[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		}
		re.WriteString("(/.*)?$")
		if regexp.MustCompile(re.String()).MatchString(path) {
			ignored = !neg
		}
	}
	return ignored
}

// TestDockerignore checks that the build context keeps every file the
// build of ./cmd/crabbox-runner needs (go.mod, go.sum, the Go files and
// embedded files of every package of this module it imports) and leaves
// out the repository's history, local binaries and databases.
func TestDockerignore(t *testing.T) {
	needTool(t, "go")
	root := actiontest.RepoRoot()
	data, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	cmd := exec.Command("go", "list", "-deps", "-f", `{{if not .Standard}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}
{{end}}{{end}}`, "./cmd/crabbox-runner")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	needed := []string{"go.mod", "go.sum"}
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if rel, err := filepath.Rel(root, f); err == nil && !strings.HasPrefix(rel, "..") {
			needed = append(needed, filepath.ToSlash(rel))
		}
	}
	if len(needed) < 20 {
		t.Fatalf("go list found only %v", needed)
	}
	for _, f := range needed {
		if dockerignored(patterns, f) {
			t.Errorf(".dockerignore excludes %s, which the build needs", f)
		}
	}
	for _, f := range []string{".git/config", "crabbox-runner", "crabbox-runner.db", "crabbox-runner.db-wal", "docs/benchmarks.md", "cmd/crabbox-runner/serve_test.go"} {
		if !dockerignored(patterns, f) {
			t.Errorf(".dockerignore lets %s into the build context", f)
		}
	}
	if dockerignored(patterns, "cmd/crabbox-runner-extra/main.go") {
		t.Error("/crabbox-runner must only exclude the binary at the root")
	}
}
