// Package replaytest is the part of a provider's replay suite that does not
// depend on the provider: finding the recordings, running each against the
// client and the fake, checking a fresh recording, and showing that a
// changed field is named. Each provider package supplies how a recorded
// request is made by its client and how its fake is compared.
package replaytest

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/crabbox/crabbox-runner/internal/exchange"
)

// Suite is one provider's replay suite.
type Suite struct {
	Provider string
	// Dir holds the recordings, testdata/recorded/<provider>.
	Dir string
	// Client replays a recording to the provider's client.
	Client func(t *testing.T, rec *exchange.Recording)
	// Fake compares a recording with the provider's fake and returns the
	// differences, each naming its field.
	Fake func(t *testing.T, rec *exchange.Recording) []string
}

// RunAll replays every recording under Dir: a file dropped there is a test
// as is.
func (s Suite) RunAll(t *testing.T) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(s.Dir, "*.jsonl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recordings under %s (%v)", s.Dir, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			rec, err := exchange.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Header.Provider != s.Provider {
				t.Fatalf("provider %q in the %s directory", rec.Header.Provider, s.Provider)
			}
			s.check(t, rec, "the "+rec.Header.Source+" recording")
		})
	}
}

// CheckFresh holds a recording just made to what RunAll holds the shipped
// ones to, so the generator and the fake cannot drift apart unnoticed, and
// searches it for the run's secrets.
func (s Suite) CheckFresh(t *testing.T, path string, secrets ...[]byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range secrets {
		if bytes.Contains(data, sec) {
			t.Errorf("the recording holds a secret of the run")
		}
	}
	rec, err := exchange.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s.check(t, rec, "its own recording")
}

func (s Suite) check(t *testing.T, rec *exchange.Recording, what string) {
	t.Run("client", func(t *testing.T) { s.Client(t, rec) })
	t.Run("fake", func(t *testing.T) {
		if diffs := s.Fake(t, rec); len(diffs) > 0 {
			t.Errorf("the fake disagrees with %s:\n  %s", what, strings.Join(diffs, "\n  "))
		}
	})
}

// NamesAChangedField rewrites, in the first answer of file that match
// selects, what re matches with repl, and expects the comparison with the
// fake to say want.
func (s Suite) NamesAChangedField(t *testing.T, file string, match func(*exchange.Exchange) bool, re *regexp.Regexp, repl, want string) {
	t.Helper()
	rec, err := exchange.ReadFile(filepath.Join(s.Dir, file))
	if err != nil {
		t.Fatal(err)
	}
	changed := false
	for i := range rec.Exchanges {
		if e := &rec.Exchanges[i]; match(e) {
			body := re.ReplaceAll(e.RespBody, []byte(repl))
			e.RespBody, changed = body, !bytes.Equal(body, e.RespBody)
			break
		}
	}
	if !changed {
		t.Fatalf("no answer in %s to change with %s", file, re)
	}
	diffs := s.Fake(t, rec)
	for _, d := range diffs {
		if strings.Contains(d, want) {
			return
		}
	}
	t.Fatalf("the comparison did not name the changed field (%q); it said:\n%s", want, strings.Join(diffs, "\n"))
}
