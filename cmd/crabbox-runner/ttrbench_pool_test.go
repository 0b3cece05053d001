package main

// Pooling the time-to-runner benchmark over seeds: one seed's 50 jobs put
// p95 on the third-slowest job, so a ratio of two p95s moves by tenths
// from seed to seed. `scripts/ttrbench.sh pool OUT.json...` pools the jobs
// of several runs (each run's OUT.json) per scenario and compares each
// scenario with its provider's plain run over the same seeds.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// ttrPooled is one scenario's jobs over several seeds.
type ttrPooled struct {
	scenario, setting string
	seeds             []uint64
	totals            []time.Duration
	money             float64
	hosts, hedges     int
	bySeed            map[uint64]ttrJSON
}

// poolTTR groups the runs by scenario and setting. A scenario's seed run
// twice in one setting is an error: which of the two to keep is the
// caller's choice (and runs older than the setting field all look alike).
func poolTTR(runs []ttrJSON) ([]*ttrPooled, error) {
	var out []*ttrPooled
	find := func(r ttrJSON) *ttrPooled {
		for _, p := range out {
			if p.scenario == r.Scenario && p.setting == r.Setting {
				return p
			}
		}
		p := &ttrPooled{scenario: r.Scenario, setting: r.Setting, bySeed: map[uint64]ttrJSON{}}
		out = append(out, p)
		return p
	}
	for _, r := range runs {
		p := find(r)
		if _, dup := p.bySeed[r.Seed]; dup {
			return nil, fmt.Errorf("scenario %s, seed %d, setting %q: two runs; pool one of them", r.Scenario, r.Seed, r.Setting)
		}
		p.bySeed[r.Seed] = r
	}
	for _, p := range out {
		for seed := range p.bySeed {
			p.seeds = append(p.seeds, seed)
		}
		slices.Sort(p.seeds)
		for _, seed := range p.seeds {
			p.add(p.bySeed[seed])
		}
	}
	return out, nil
}

func (p *ttrPooled) add(r ttrJSON) {
	for _, s := range r.TotalSecs {
		p.totals = append(p.totals, time.Duration(s*float64(time.Second)))
	}
	p.money += r.Money
	p.hosts += r.Hosts
	p.hedges += r.Hedges
}

// over is p restricted to the given seeds (the seeds a scenario shares
// with its plain run), nil if one is missing.
func (p *ttrPooled) over(seeds []uint64) *ttrPooled {
	q := &ttrPooled{scenario: p.scenario, setting: p.setting, seeds: seeds}
	for _, seed := range seeds {
		r, ok := p.bySeed[seed]
		if !ok {
			return nil
		}
		q.add(r)
	}
	return q
}

// pooledReport is the pooled table, then each scenario against its
// provider's plain run of the same setting over the seeds both ran.
func pooledReport(pools []*ttrPooled) string {
	var b strings.Builder
	b.WriteString("| scenario | setting | seeds | jobs | p50 total | p95 total | max total | host money | hosts | hedges |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range pools {
		fmt.Fprintf(&b, "| %s | %s | %v | %d | %s | %s | %s | $%.2f | %d | %d |\n", p.scenario, p.setting, p.seeds, len(p.totals),
			fmtDur(pct(p.totals, 50)), fmtDur(pct(p.totals, 95)), fmtDur(pct(p.totals, 100)), p.money, p.hosts, p.hedges)
	}
	header := false
	for _, p := range pools {
		prov, _, _ := strings.Cut(p.scenario, "-")
		if prov == p.scenario {
			continue
		}
		var base *ttrPooled
		for _, q := range pools {
			if q.scenario == prov && q.setting == p.setting {
				base = q
			}
		}
		if base == nil {
			continue
		}
		var shared []uint64
		for _, seed := range p.seeds {
			if _, ok := base.bySeed[seed]; ok {
				shared = append(shared, seed)
			}
		}
		a, z := p.over(shared), base.over(shared)
		if a == nil || z == nil || len(shared) == 0 || pct(z.totals, 95) == 0 || z.money == 0 {
			continue
		}
		if !header {
			b.WriteString("\n| pooled, scenario vs its provider's plain run | seeds | p50 ratio | p95 ratio | max ratio | money ratio |\n|---|---|---:|---:|---:|---:|\n")
			header = true
		}
		ratio := func(q float64) float64 { return float64(pct(a.totals, q)) / float64(pct(z.totals, q)) }
		fmt.Fprintf(&b, "| %s vs %s | %v | %.2f | %.2f | %.2f | %.3f |\n", p.scenario, prov, shared, ratio(50), ratio(95), ratio(100), a.money/z.money)
	}
	return b.String()
}

// TestTTRPool pools the OUT.json files named in CRABBOX_TTR_POOL (comma
// separated); scripts/ttrbench.sh pool runs it.
func TestTTRPool(t *testing.T) {
	files := os.Getenv("CRABBOX_TTR_POOL")
	if files == "" {
		t.Skip("pools time-to-runner runs with CRABBOX_TTR_POOL=a.json,b.json (scripts/ttrbench.sh pool)")
	}
	var runs []ttrJSON
	for _, f := range strings.Split(files, ",") {
		b, err := os.ReadFile(filepath.Clean(f))
		if err != nil {
			t.Fatal(err)
		}
		var rs []ttrJSON
		if err := json.Unmarshal(b, &rs); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		runs = append(runs, rs...)
	}
	pools, err := poolTTR(runs)
	if err != nil {
		t.Fatal(err)
	}
	out := pooledReport(pools)
	t.Log("\n" + out)
	if path := os.Getenv("CRABBOX_TTR_OUT"); path != "" {
		if err := os.WriteFile(filepath.Clean(path), []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The pooling pairs seeds: a scenario is compared with its plain run over
// the seeds both ran, and runs of another setting stay apart.
func TestTTRPoolPairsSeeds(t *testing.T) {
	run := func(sc string, seed uint64, setting string, money float64, totals ...float64) ttrJSON {
		return ttrJSON{Scenario: sc, Seed: seed, Setting: setting, Money: money, TotalSecs: totals}
	}
	runs := []ttrJSON{
		run("vast", 1, "a", 10, 100, 200), run("vast", 2, "a", 10, 300, 400), run("vast", 3, "a", 10, 1000, 1000),
		run("vast-hedge", 1, "a", 11, 50, 100), run("vast-hedge", 2, "a", 11, 150, 200),
		run("vast-hedge", 1, "b", 99, 1, 1),
	}
	pools, err := poolTTR(runs)
	if err != nil {
		t.Fatal(err)
	}
	if len(pools) != 3 {
		t.Fatalf("%d pools, want vast/a, vast-hedge/a, vast-hedge/b", len(pools))
	}
	rep := pooledReport(pools)
	// Seeds 1 and 2: hedged p95 200 s against 400 s, money 22 against 20;
	// seed 3 (no hedged run) and setting b (no plain run) stay out.
	if !strings.Contains(rep, "| vast-hedge vs vast | [1 2] | 0.50 | 0.50 | 0.50 | 1.100 |") {
		t.Fatalf("report:\n%s", rep)
	}
	if strings.Count(rep, " vs vast ") != 1 {
		t.Fatalf("a setting without its plain run was compared:\n%s", rep)
	}
	if _, err := poolTTR(append(runs, run("vast", 2, "a", 10, 1, 1))); err == nil {
		t.Fatal("a seed run twice in one setting was pooled")
	}
}
