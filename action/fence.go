package action

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"strings"
	"sync"
)

// A rented host is someone else's machine: what it prints (nvidia-smi's
// answer, a failing phase's stderr) must reach the job log as text, never
// as workflow commands. The runner reads commands on every line a step
// prints (actions/runner src/Runner.Worker/ActionCommandManager.cs,
// TryProcessCommand): "::name ...::data" once leading spaces are trimmed
// (ActionCommand.TryParseV2) and the older "##[name ...]data" anywhere in a
// line (ActionCommand.TryParse). While stopped by ::stop-commands::TOKEN it
// processes nothing until a line ::TOKEN:: (GitHub docs, "Workflow commands
// for GitHub Actions" → "Stopping and starting workflow commands"; the
// same file's _stopProcessCommand). So host text on stdout is written
// between such markers, with a token the host cannot know: fresh and
// random for every block, and never one that occurs in the text.

// lockedWriter serializes whole writes to stdout: a fenced block and an
// ::add-mask:: must not interleave, or the mask would land inside the
// block, where the runner ignores it.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// fenced returns text (which ends up on one or more lines) wrapped in a
// stop-commands block, as one string to be written in one Write.
func fenced(text string) string {
	text = strings.TrimRight(text, "\r\n")
	var token string
	for token == "" || strings.Contains(text, token) {
		token = stopToken()
	}
	return "::stop-commands::" + token + "\n" + text + "\n::" + token + "::\n"
}

func stopToken() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// inert rewrites text so that no line of it is a workflow command: for
// stderr, where a stop-commands block would race with stdout's commands
// (the runner reads both streams, and their order is not kept). A line
// that would start with "::" gets a leading "| ", and "##[" becomes
// "## [".
func inert(text string) string {
	text = strings.ReplaceAll(text, "##[", "## [")
	lines := strings.SplitAfter(text, "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimLeft(l, " \t\r\v\f"), "::") {
			lines[i] = "| " + l
		}
	}
	return strings.Join(lines, "")
}

// inertWriter applies inert to each Write; slog writes one record a Write.
type inertWriter struct{ w io.Writer }

func (i inertWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(i.w, inert(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
