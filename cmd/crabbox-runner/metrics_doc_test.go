package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/crabbox/crabbox-runner/action/actiontest"
)

// TestMetricsDocAlertRules checks the alert rules of docs/metrics.md
// against the code, as far as that goes without Prometheus: the rules
// parse, each has a severity and a summary, and every metric and every
// label value they name is one the code has (no alert silently watching a
// series that never exists).
func TestMetricsDocAlertRules(t *testing.T) {
	doc := filepath.Join(actiontest.RepoRoot(), "docs", "metrics.md")
	var rulesText, recipe string
	for _, f := range parseFences(t, doc) {
		switch {
		case f.Lang == "yaml" && strings.Contains(f.Text, "\ngroups:\n"):
			rulesText = f.Text
		case f.Lang == "sh" && strings.Contains(f.Text, "crabbox-runner gc --output json"):
			recipe = f.Text
		}
	}
	if rulesText == "" || recipe == "" {
		t.Fatal("docs/metrics.md lacks the alert rules or the gc textfile recipe")
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(rulesText))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatal(err)
	}

	lits := goStringLiterals(t)
	metrics := map[string]bool{}
	for s := range lits {
		if regexp.MustCompile(`^crabbox_[a-z_]+$`).MatchString(s) {
			for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
				metrics[s+suffix] = true
			}
		}
	}
	// From the textfile recipe, not from serve.
	if strings.Contains(recipe, "crabbox_gc_planned_actions{action=") {
		metrics["crabbox_gc_planned_actions"] = true
	}
	if !metrics["crabbox_leases"] || !metrics["crabbox_lease_phase_seconds_bucket"] {
		t.Fatalf("found too few metric names in the code: %v", metrics)
	}

	metricRe := regexp.MustCompile(`\bcrabbox_[a-z_]+`)
	matcherRe := regexp.MustCompile(`(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			where := g.Name + "/" + r.Alert
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("%s: a rule without alert or expr", where)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q", where, s)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no summary", where)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", where, r.For, err)
				}
			}
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") || strings.Count(r.Expr, "{") != strings.Count(r.Expr, "}") {
				t.Errorf("%s: unbalanced brackets in %s", where, r.Expr)
			}
			for _, m := range metricRe.FindAllString(r.Expr, -1) {
				if !metrics[m] {
					t.Errorf("%s: metric %s does not exist", where, m)
				}
			}
			for _, m := range matcherRe.FindAllStringSubmatch(r.Expr, -1) {
				if m[1] == "job" {
					continue // Prometheus' scrape job, not ours
				}
				for _, v := range strings.Split(m[3], "|") {
					if !lits[v] {
						t.Errorf("%s: %s%s%q: the code never sets the value %q", where, m[1], m[2], m[3], v)
					}
				}
			}
		}
	}
	if n < 8 {
		t.Errorf("only %d rules", n)
	}
}
