package exchange

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// ShapeOptions tune CompareShapes.
type ShapeOptions struct {
	// DataKeys reports whether the object at path (array indices written
	// "[]", e.g. "instances[].ports") is keyed by data (type names,
	// labels, ports) rather than by field names. Its entries are compared
	// with the entry of the same key, or with the other side's first
	// entry when that key is not there.
	DataKeys func(path string) bool
}

// CompareShapes compares two JSON documents by shape: the same fields
// present, with the same JSON types, recursively. Values are not compared
// (ids, prices and times differ between any two runs). A null matches any
// type, and a field that is null on one side may be absent on the other:
// the real APIs send null for "not yet" (an address while booting). Arrays
// are compared element by element as far as the shorter goes; an empty
// array matches any. Each difference names its field's path and both
// types, e.g. "instances[0].ssh_port: recorded number, fake string".
func CompareShapes(recorded, fake []byte, o ShapeOptions) []string {
	rv, rok := decode(recorded)
	fv, fok := decode(fake)
	switch {
	case !rok && !fok:
		return nil // neither is JSON (a text error page): nothing to compare
	case !rok:
		return []string{fmt.Sprintf("body: recorded text, fake %s", kind(fv))}
	case !fok:
		return []string{fmt.Sprintf("body: recorded %s, fake text", kind(rv))}
	}
	c := &comparer{o: o}
	c.compare("", rv, fv)
	return c.diffs
}

func decode(b []byte) (any, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil || dec.More() {
		return nil, false
	}
	return v, true
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "bool"
	}
	return fmt.Sprintf("%T", v)
}

type comparer struct {
	o     ShapeOptions
	diffs []string
}

func (c *comparer) add(path, format string, args ...any) {
	if path == "" {
		path = "body"
	}
	c.diffs = append(c.diffs, path+": "+fmt.Sprintf(format, args...))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var index = regexp.MustCompile(`\[\d+\]`)

func (c *comparer) compare(path string, r, f any) {
	if r == nil || f == nil {
		return
	}
	if kind(r) != kind(f) {
		c.add(path, "recorded %s, fake %s", kind(r), kind(f))
		return
	}
	switch rv := r.(type) {
	case map[string]any:
		fv := f.(map[string]any)
		if c.o.DataKeys != nil && c.o.DataKeys(index.ReplaceAllString(path, "[]")) {
			c.compareData(path, rv, fv)
			return
		}
		for _, k := range keys(rv, fv) {
			rc, rin := rv[k]
			fc, fin := fv[k]
			switch {
			case rin && !fin && rc != nil:
				c.add(join(path, k), "recorded %s, fake missing", kind(rc))
			case fin && !rin && fc != nil:
				c.add(join(path, k), "recorded missing, fake %s", kind(fc))
			case rin && fin:
				c.compare(join(path, k), rc, fc)
			}
		}
	case []any:
		fv := f.([]any)
		for i := 0; i < len(rv) && i < len(fv); i++ {
			c.compare(fmt.Sprintf("%s[%d]", path, i), rv[i], fv[i])
		}
	}
}

func (c *comparer) compareData(path string, r, f map[string]any) {
	fk := keys(f)
	if len(fk) == 0 {
		return
	}
	for _, k := range keys(r) {
		other, ok := f[k]
		if !ok {
			other = f[fk[0]]
		}
		c.compare(path+"{"+k+"}", r[k], other)
	}
}

func keys(ms ...map[string]any) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// FirstDiffs shortens a list of differences for an error message.
func FirstDiffs(diffs []string, n int) string {
	if len(diffs) <= n {
		return strings.Join(diffs, "; ")
	}
	return strings.Join(diffs[:n], "; ") + fmt.Sprintf("; and %d more", len(diffs)-n)
}
