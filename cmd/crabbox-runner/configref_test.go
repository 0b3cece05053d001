package main

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/crabbox/crabbox-runner/action/actiontest"
)

// configDocNames is the first `code` cell of each table row under the
// "## <section>" heading of docs/configuration.md.
func configDocNames(t *testing.T, section string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(actiontest.RepoRoot(), "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	cell := regexp.MustCompile("^\\|\\s*`([^`]+)`")
	var out []string
	in, found := false, false
	for _, line := range strings.Split(string(data), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			in = strings.TrimSpace(h) == section
			found = found || in
			continue
		}
		if m := cell.FindStringSubmatch(line); in && m != nil {
			out = append(out, m[1])
		}
	}
	if !found {
		t.Fatalf("docs/configuration.md has no section %q", section)
	}
	return out
}

// goStringLiterals are the string constants in the module's non-test Go
// files: where the name of a variable the code reads must appear.
func goStringLiterals(t *testing.T) map[string]bool {
	t.Helper()
	lits := map[string]bool{}
	root := actiontest.RepoRoot()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if bl, ok := n.(*ast.BasicLit); ok && bl.Kind == token.STRING {
				if s, err := strconv.Unquote(bl.Value); err == nil {
					lits[s] = true
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lits
}

// TestConfigReferenceCommands runs every command (but demo, which reads no
// environment and would start the demo) with an empty environment and a
// getenv that records what it asks for, and checks every name is in
// docs/configuration.md: in "Environment variables" (the loader's, which
// internal/config's TestConfigReference holds exactly to the loader) or in
// "Variables of single commands", where NAME_<X> stands for a prefix. And
// every name listed there must exist: asked for here, or a string in the
// code (a variable read only on a path an empty environment never takes).
func TestConfigReferenceCommands(t *testing.T) {
	t.Chdir(t.TempDir())
	var mu sync.Mutex
	read := map[string][]string{} // name → commands
	root := newRootCmd(io.Discard, io.Discard, func(string) string { return "" })
	var commands []string
	for _, c := range root.Commands() {
		if name := c.Name(); name != "demo" && name != "help" && name != "completion" {
			commands = append(commands, name)
		}
	}
	if len(commands) < 8 {
		t.Fatalf("commands %v", commands)
	}
	for _, name := range commands {
		args := []string{name}
		if name == "release" {
			args = append(args, "no-such-lease")
		}
		run(context.Background(), args, io.Discard, io.Discard, func(k string) string {
			mu.Lock()
			defer mu.Unlock()
			if !slices.Contains(read[k], name) {
				read[k] = append(read[k], name)
			}
			return ""
		})
	}
	if len(read["CRABBOX_CONFIG"]) < 6 || len(read["INPUT_MODE"]) != 1 {
		t.Fatalf("the recording getenv saw too little: %v", read)
	}

	loader := configDocNames(t, "Environment variables")
	single := configDocNames(t, "Variables of single commands")
	var prefixes []string
	for _, s := range single {
		if p, ok := strings.CutSuffix(s, "<NAME>"); ok {
			prefixes = append(prefixes, p)
		}
	}
	documented := func(k string) bool {
		if slices.Contains(loader, k) || slices.Contains(single, k) {
			return true
		}
		return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(k, p) })
	}
	for k, cmds := range read {
		if !documented(k) {
			t.Errorf("%s (read by %s) is not in docs/configuration.md", k, strings.Join(cmds, ", "))
		}
	}

	lits := goStringLiterals(t)
	for _, s := range single {
		if p, ok := strings.CutSuffix(s, "<NAME>"); ok {
			found := false
			for k := range read {
				found = found || strings.HasPrefix(k, p)
			}
			for k := range lits {
				found = found || (strings.HasPrefix(k, p) && strings.ToUpper(k) == k && !strings.Contains(k, " "))
			}
			if !found {
				t.Errorf("docs/configuration.md lists %s, but no command reads a variable starting with %s", s, p)
			}
			continue
		}
		if len(read[s]) == 0 && !lits[s] {
			t.Errorf("docs/configuration.md lists %s, which no command reads and the code never names", s)
		}
	}
}
