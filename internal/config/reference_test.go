package config

import (
	"bufio"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// referenceDoc is the configuration reference this test holds to the code
// (absolute: a test may change directory).
var referenceDoc = func() string {
	p, err := filepath.Abs(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		panic(err)
	}
	return p
}()

// ConfigKeys lists every key of the config file, as dotted paths with
// "[]" for list items (classes[].gpu.name), from the yaml tags of Config,
// recursively. Only leaves are listed: a struct is its fields.
func configKeys(t reflect.Type, prefix string, out *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "-" || !f.IsExported() {
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name) // yaml.v3's default
		}
		key := prefix + tag
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct && ft.PkgPath() != "time":
			configKeys(ft, key+".", out)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			configKeys(ft.Elem(), key+"[].", out)
		default:
			*out = append(*out, key)
		}
	}
}

// envNamesRead runs Load with a getenv that records every name asked for
// and answers "" to all, so that every fallback (X, then X_FILE) is asked.
func envNamesRead(t *testing.T) []string {
	t.Helper()
	var mu sync.Mutex
	seen := map[string]bool{}
	getenv := func(k string) string {
		mu.Lock()
		defer mu.Unlock()
		seen[k] = true
		return ""
	}
	// Run where no crabbox-runner.yaml can be picked up by accident.
	t.Chdir(t.TempDir())
	if _, err := Load(Overrides{}, getenv); err != nil {
		t.Fatalf("Load with an empty environment: %v", err)
	}
	names := make([]string, 0, len(seen))
	for k := range seen {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// docNames returns the names in the first column of the tables under the
// "## <section>" heading of the reference (up to the next "## " heading):
// the first `code span` of each row.
func docNames(t *testing.T, section string) []string {
	t.Helper()
	f, err := os.Open(referenceDoc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cell := regexp.MustCompile("^\\|\\s*`([^`]+)`")
	var out []string
	in, found := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = strings.TrimSpace(strings.TrimPrefix(line, "## ")) == section
			found = found || in
			continue
		}
		if !in {
			continue
		}
		if m := cell.FindStringSubmatch(line); m != nil {
			out = append(out, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatalf("%s has no section %q", referenceDoc, section)
	}
	return out
}

// compare fails for every name on one side and not the other, and for
// names listed twice.
func compare(t *testing.T, what string, code, doc []string) {
	t.Helper()
	seen := map[string]int{}
	for _, d := range doc {
		seen[d]++
		if seen[d] == 2 {
			t.Errorf("%s: %s is listed twice in %s", what, d, referenceDoc)
		}
	}
	for _, c := range code {
		if seen[c] == 0 {
			t.Errorf("%s: the code knows %s, but %s does not list it", what, c, referenceDoc)
		}
	}
	for d := range seen {
		if !slices.Contains(code, d) {
			t.Errorf("%s: %s lists %s, which the code does not know", what, referenceDoc, d)
		}
	}
}

// TestConfigReference holds docs/configuration.md to the code: every
// config file key (from the yaml tags of Config) and every environment
// variable Load reads is listed, and nothing else is.
func TestConfigReference(t *testing.T) {
	var keys []string
	configKeys(reflect.TypeFor[Config](), "", &keys)
	if len(keys) < 40 || !slices.Contains(keys, "classes[].gpu.min_memory_gb") || !slices.Contains(keys, "deployment") {
		t.Fatalf("the walk over Config found too little: %v", keys)
	}
	compare(t, "config key", keys, docNames(t, "Config file keys"))

	env := envNamesRead(t)
	for _, must := range []string{"CRABBOX_CONFIG", "CRABBOX_WEBHOOK_SECRET_FILE", "VAST_API_KEY"} {
		if !slices.Contains(env, must) {
			t.Fatalf("the recording getenv missed %s: %v", must, env)
		}
	}
	compare(t, "environment variable", env, docNames(t, "Environment variables"))
}

// TestConfigReferenceDefaults checks the defaults the reference states for
// the settings whose default is a constant of this package.
func TestConfigReferenceDefaults(t *testing.T) {
	data, err := os.ReadFile(referenceDoc)
	if err != nil {
		t.Fatal(err)
	}
	c := &Config{}
	c.ApplyDefaults()
	for key, want := range map[string]string{
		"listen":                   c.Listen,
		"database_url":             c.DatabaseURL,
		"log.level":                c.Log.Level,
		"log.format":               c.Log.Format,
		"github.api_url":           c.GitHub.APIURL,
		"github.runner_group_id":   "1",
		"runner.url":               c.Runner.URL,
		"providers.vast.api_url":   c.Providers.Vast.APIURL,
		"providers.lambda.api_url": c.Providers.Lambda.APIURL,
		"defaults.boot_timeout":    "10m",
		"defaults.idle_timeout":    "15m",
		"defaults.max_lifetime":    "6h",
	} {
		row := regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(key) + "` \\|[^|]*\\| `" + regexp.QuoteMeta(want) + "`")
		if !row.Match(data) {
			t.Errorf("%s: the reference does not give the default `%s`", key, want)
		}
	}
	if DefaultBootTimeout.String() != "10m0s" || DefaultIdleTimeout.String() != "15m0s" || DefaultMaxLifetime.String() != "6h0m0s" {
		t.Errorf("the default deadlines changed: update docs/configuration.md and this test")
	}
}
