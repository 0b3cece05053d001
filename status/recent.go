package status

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
	"unicode/utf8"
)

// DefaultRecentSize is how many warnings and errors a Recent keeps.
const DefaultRecentSize = 50

// recentAttrs are the only attributes a Recent keeps from a record; the
// rest of a record (and any attribute inside a group) is dropped, so the
// page shows what an operator needs and nothing a log line happened to
// carry besides.
var recentAttrs = []string{"component", "lease_id", "job_id", "class", "provider", "error"}

// Lengths beyond which a kept message or attribute value is cut.
const (
	maxMessageLen = 300
	maxAttrLen    = 500
)

// LogRecord is one warning or error kept for the status page.
type LogRecord struct {
	Time    time.Time
	Level   slog.Level
	Message string
	// Attrs are the kept attributes in the order of recentAttrs.
	Attrs []LogAttr
}

// LogAttr is one kept attribute, its value as text.
type LogAttr struct {
	Key, Value string
}

// Attr returns the value of the kept attribute key, or "".
func (r LogRecord) Attr(key string) string {
	for _, a := range r.Attrs {
		if a.Key == key {
			return a.Value
		}
	}
	return ""
}

// Recent keeps the last warnings and errors logged, in a ring of fixed
// size. Its Handler sits in the process logger's chain; put it after any
// redaction so that what it keeps is already clean.
type Recent struct {
	mu   sync.Mutex
	ring []LogRecord
	next int
	full bool
}

// NewRecent returns a Recent keeping the last n records (DefaultRecentSize
// when n < 1).
func NewRecent(n int) *Recent {
	if n < 1 {
		n = DefaultRecentSize
	}
	return &Recent{ring: make([]LogRecord, n)}
}

// Records returns the kept records, newest first.
func (r *Recent) Records() []LogRecord {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.ring)
	}
	out := make([]LogRecord, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.ring[(r.next-i+len(r.ring))%len(r.ring)])
	}
	return out
}

func (r *Recent) add(rec LogRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ring[r.next] = rec
	r.next = (r.next + 1) % len(r.ring)
	if r.next == 0 {
		r.full = true
	}
}

// Handler returns a slog.Handler that passes every record on to next, as
// next would have it, and keeps each record at level WARN or above in r,
// whatever level next logs at.
func (r *Recent) Handler(next slog.Handler) slog.Handler {
	return &recentHandler{r: r, next: next}
}

type recentHandler struct {
	r     *Recent
	next  slog.Handler
	attrs []LogAttr // kept attributes given by WithAttrs, outside any group
	group bool      // inside a group: later attributes are not kept
}

func (h *recentHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

func (h *recentHandler) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Level >= slog.LevelWarn {
		kept := LogRecord{Time: rec.Time, Level: rec.Level, Message: cut(rec.Message, maxMessageLen),
			Attrs: slices.Clone(h.attrs)}
		if !h.group {
			rec.Attrs(func(a slog.Attr) bool {
				kept.Attrs = keepAttr(kept.Attrs, a)
				return true
			})
		}
		kept.Attrs = orderAttrs(kept.Attrs)
		h.r.add(kept)
	}
	if !h.next.Enabled(ctx, rec.Level) {
		return nil
	}
	return h.next.Handle(ctx, rec)
}

func (h *recentHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := &recentHandler{r: h.r, next: h.next.WithAttrs(attrs), attrs: slices.Clone(h.attrs), group: h.group}
	if !h.group {
		for _, a := range attrs {
			out.attrs = keepAttr(out.attrs, a)
		}
	}
	return out
}

func (h *recentHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &recentHandler{r: h.r, next: h.next.WithGroup(name), attrs: h.attrs, group: true}
}

// keepAttr adds a to kept when its key is one of recentAttrs; a later
// value of the same key replaces an earlier one.
func keepAttr(kept []LogAttr, a slog.Attr) []LogAttr {
	if !slices.Contains(recentAttrs, a.Key) {
		return kept
	}
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		return kept
	}
	s := cut(v.String(), maxAttrLen)
	for i := range kept {
		if kept[i].Key == a.Key {
			kept[i].Value = s
			return kept
		}
	}
	return append(kept, LogAttr{Key: a.Key, Value: s})
}

func orderAttrs(attrs []LogAttr) []LogAttr {
	slices.SortStableFunc(attrs, func(a, b LogAttr) int {
		return slices.Index(recentAttrs, a.Key) - slices.Index(recentAttrs, b.Key)
	})
	return attrs
}

// cut shortens s to at most n bytes on a rune boundary, marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
