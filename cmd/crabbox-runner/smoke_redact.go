package main

// The smoke's redaction: its transcript is meant to be pasted into an issue
// as proof, so everything it prints, on stdout and stderr alike, passes
// through one redactor that learns each secret of the run as it appears:
// the keys and token it was started with, then each SSH private key and
// JIT config the run makes. Whatever a provider or a host answers, a
// secret in it is printed as [REDACTED].

import (
	"context"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/crabbox/crabbox-runner/provisioner"
)

type redactor struct {
	onAdd   func(string) // told each secret learnt; may be nil
	mu      sync.Mutex
	secrets []string
	r       *strings.Replacer
}

// add learns secrets. Values shorter than 8 characters are skipped, as
// newLogger does: they would redact ordinary words. A PEM block is learned
// whole and line by line, so a line of it printed alone is caught too.
func (r *redactor) add(vals ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range vals {
		v = strings.TrimSpace(v)
		if len(v) < 8 {
			continue
		}
		r.secrets = append(r.secrets, v)
		if r.onAdd != nil {
			r.onAdd(v)
		}
		if strings.Contains(v, "\n") {
			for _, line := range strings.Split(v, "\n") {
				if line = strings.TrimSpace(line); len(line) >= 16 && !strings.HasPrefix(line, "-----") {
					r.secrets = append(r.secrets, line)
				}
			}
		}
	}
	// Longest first: a secret that contains another is replaced whole.
	sorted := slices.Clone(r.secrets)
	slices.SortFunc(sorted, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(sorted))
	for _, s := range sorted {
		pairs = append(pairs, s, "[REDACTED]")
	}
	r.r = strings.NewReplacer(pairs...)
}

func (r *redactor) redact(s string) string {
	r.mu.Lock()
	rep := r.r
	r.mu.Unlock()
	if rep == nil {
		return s
	}
	return rep.Replace(s)
}

// writer redacts each write. Every writer of the smoke writes whole lines
// (fmt.Fprintf of a line, one slog record), so a secret is never split
// across two writes.
func (r *redactor) writer(w io.Writer) io.Writer { return &redactingWriter{r: r, w: w} }

type redactingWriter struct {
	r  *redactor
	mu sync.Mutex
	w  io.Writer
}

func (w *redactingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := io.WriteString(w.w, w.r.redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// redactingBootstrapper teaches the redactor each key pair it makes.
type redactingBootstrapper struct {
	provisioner.Bootstrapper
	r *redactor
}

func (b redactingBootstrapper) NewCredentials(seed []byte, withHostKey bool) (*provisioner.Credentials, error) {
	c, err := b.Bootstrapper.NewCredentials(seed, withHostKey)
	if err == nil {
		b.r.add(string(c.ClientPrivatePEM))
		if c.HostKey != nil {
			b.r.add(string(c.HostKey.PrivatePEM))
		}
	}
	return c, err
}

// redactingGitHub teaches the redactor each JIT config GitHub hands out.
type redactingGitHub struct {
	provisioner.GitHub
	r *redactor
}

func (g redactingGitHub) GenerateJITConfig(ctx context.Context, s provisioner.Scope, name string, labels []string) (*provisioner.JITConfig, error) {
	j, err := g.GitHub.GenerateJITConfig(ctx, s, name, labels)
	if err == nil {
		g.r.add(j.Encoded)
	}
	return j, err
}
