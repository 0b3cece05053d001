package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	gh "github.com/google/go-github/v62/github"

	"github.com/crabbox/crabbox-runner/provisioner"
)

// ErrRunnerBusy is wrapped by RemoveRunner's error when GitHub answers 422,
// which in practice means the runner is running a job (reference §3.3).
var ErrRunnerBusy = provisioner.ErrRunnerBusy

// workFolder is the JIT runner's work directory, relative to its root.
const workFolder = "_work"

// waitJIT waits for the registration pacer: beyond it, registrations queue
// in order rather than trip GitHub's limit and fail.
func (c *Client) waitJIT(ctx context.Context) error {
	if c.jitLimiter == nil {
		return nil
	}
	start := time.Now()
	if err := c.jitLimiter.Wait(ctx); err != nil {
		return fmt.Errorf("github: waiting for the JIT registration pace: %w", err)
	}
	if d := time.Since(start); d > time.Millisecond && c.onLimitWait != nil {
		c.onLimitWait("github_jit", d)
	}
	return nil
}

// GenerateJITConfig registers a just-in-time runner. When the name is
// taken (409), typically by an earlier attempt whose answer was lost, that
// runner is removed and the registration is tried once more.
func (c *Client) GenerateJITConfig(ctx context.Context, scope provisioner.Scope, name string, labels []string) (*provisioner.JITConfig, error) {
	t, err := parseScope(scope)
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, errors.New("github: a JIT runner needs a name")
	}
	if len(labels) == 0 || len(labels) > 100 {
		return nil, fmt.Errorf("github: a JIT runner needs 1 to 100 labels, not %d", len(labels))
	}
	g, err := c.clientFor(ctx, scope)
	if err != nil {
		return nil, err
	}
	if err := c.waitJIT(ctx); err != nil {
		return nil, err
	}

	cfg, err := c.generate(ctx, g, t, name, labels)
	if statusOf(err) == http.StatusConflict {
		old, lerr := runnerByName(ctx, g, t, name)
		switch {
		case errors.Is(lerr, provisioner.ErrNotFound):
			// Gone in the meantime; the retry below may just work.
		case lerr != nil:
			return nil, fmt.Errorf("github: runner name %q is taken in %s, and looking it up failed: %w", name, scope, lerr)
		default:
			if rerr := removeRunner(ctx, g, t, old.ID); rerr != nil {
				return nil, fmt.Errorf("github: runner name %q is taken in %s by runner %d, and removing it failed: %w", name, scope, old.ID, rerr)
			}
		}
		cfg, err = c.generate(ctx, g, t, name, labels)
	}
	if statusOf(err) == http.StatusNotFound {
		return nil, fmt.Errorf("github: generate JIT config for runner %q in %s: runner group %d or the %s is not visible with these credentials: %w",
			name, scope, c.groupID, scopeNoun(t), err)
	}
	if err != nil {
		return nil, fmt.Errorf("github: generate JIT config for runner %q in %s: %w", name, scope, err)
	}
	if cfg.GetRunner().GetID() == 0 || cfg.GetEncodedJITConfig() == "" {
		return nil, fmt.Errorf("github: generate JIT config for runner %q in %s: the answer lacks the runner or its config", name, scope)
	}
	c.views.noteRegistered(cfg.GetRunner().GetID(), time.Now())
	return &provisioner.JITConfig{
		RunnerID:   cfg.GetRunner().GetID(),
		RunnerName: cfg.GetRunner().GetName(),
		Encoded:    cfg.GetEncodedJITConfig(),
	}, nil
}

func (c *Client) generate(ctx context.Context, g *gh.Client, t target, name string, labels []string) (*gh.JITRunnerConfig, error) {
	req := &gh.GenerateJITConfigRequest{
		Name:          name,
		RunnerGroupID: c.groupID,
		WorkFolder:    gh.String(workFolder),
		Labels:        labels,
	}
	var (
		cfg *gh.JITRunnerConfig
		err error
	)
	if t.repo != "" {
		cfg, _, err = g.Actions.GenerateRepoJITConfig(ctx, t.owner, t.repo, req)
	} else {
		cfg, _, err = g.Actions.GenerateOrgJITConfig(ctx, t.org, req)
	}
	return cfg, err
}

// runnerByID gets one runner (GET …/actions/runners/{id}), or
// provisioner.ErrNotFound.
func (c *Client) runnerByID(ctx context.Context, scope provisioner.Scope, id int64) (*provisioner.Runner, error) {
	t, err := parseScope(scope)
	if err != nil {
		return nil, err
	}
	g, err := c.clientFor(ctx, scope)
	if err != nil {
		return nil, err
	}
	var r *gh.Runner
	if t.repo != "" {
		r, _, err = g.Actions.GetRunner(ctx, t.owner, t.repo, id)
	} else {
		r, _, err = g.Actions.GetOrganizationRunner(ctx, t.org, id)
	}
	if statusOf(err) == http.StatusNotFound {
		return nil, fmt.Errorf("github: runner %d in %s: %w", id, scope, provisioner.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("github: get runner %d in %s: %w", id, scope, err)
	}
	out := toRunner(r)
	return &out, nil
}

// RunnerByName finds a runner by name, or provisioner.ErrNotFound.
func (c *Client) RunnerByName(ctx context.Context, scope provisioner.Scope, name string) (*provisioner.Runner, error) {
	t, err := parseScope(scope)
	if err != nil {
		return nil, err
	}
	g, err := c.clientFor(ctx, scope)
	if err != nil {
		return nil, err
	}
	r, err := runnerByName(ctx, g, t, name)
	if err != nil {
		return nil, fmt.Errorf("github: runner %q in %s: %w", name, scope, err)
	}
	return r, nil
}

func runnerByName(ctx context.Context, g *gh.Client, t target, name string) (*provisioner.Runner, error) {
	page, _, err := listRunners(ctx, g, t, &gh.ListRunnersOptions{
		Name:        gh.String(name),
		ListOptions: gh.ListOptions{PerPage: 100},
	})
	if err != nil {
		return nil, err
	}
	// The name filter should return only that runner; check anyway, and
	// prefer an exact match over one that differs in case.
	var folded *gh.Runner
	for _, r := range page.Runners {
		if r.GetName() == name {
			out := toRunner(r)
			return &out, nil
		}
		if folded == nil && strings.EqualFold(r.GetName(), name) {
			folded = r
		}
	}
	if folded != nil {
		out := toRunner(folded)
		return &out, nil
	}
	return nil, provisioner.ErrNotFound
}

// ListRunners returns every self-hosted runner in the scope, following
// pages of 100 to the end. It is background work for the budget (gc).
func (c *Client) ListRunners(ctx context.Context, scope provisioner.Scope) ([]provisioner.Runner, error) {
	out, _, err := c.listAll(provisioner.Background(ctx), scope)
	return out, err
}

// listAll lists the scope's runners and says how many pages it took.
func (c *Client) listAll(ctx context.Context, scope provisioner.Scope) ([]provisioner.Runner, int, error) {
	t, err := parseScope(scope)
	if err != nil {
		return nil, 0, err
	}
	g, err := c.clientFor(ctx, scope)
	if err != nil {
		return nil, 0, err
	}
	opts := &gh.ListRunnersOptions{ListOptions: gh.ListOptions{PerPage: 100, Page: 1}}
	var out []provisioner.Runner
	for pages := 1; ; pages++ {
		page, resp, err := listRunners(ctx, g, t, opts)
		if err != nil {
			return nil, pages, fmt.Errorf("github: list runners in %s (page %d): %w", scope, opts.Page, err)
		}
		for _, r := range page.Runners {
			out = append(out, toRunner(r))
		}
		next := resp.NextPage
		if next == 0 && len(page.Runners) > 0 && len(out) < page.TotalCount {
			// No Link header (some proxies drop it): go by the count.
			next = opts.Page + 1
		}
		if next <= opts.Page {
			return out, pages, nil
		}
		opts.Page = next
	}
}

func listRunners(ctx context.Context, g *gh.Client, t target, opts *gh.ListRunnersOptions) (*gh.Runners, *gh.Response, error) {
	if t.repo != "" {
		return g.Actions.ListRunners(ctx, t.owner, t.repo, opts)
	}
	return g.Actions.ListOrganizationRunners(ctx, t.org, opts)
}

// RemoveRunner deletes a runner; one already gone counts as removed.
func (c *Client) RemoveRunner(ctx context.Context, scope provisioner.Scope, id int64) error {
	t, err := parseScope(scope)
	if err != nil {
		return err
	}
	g, err := c.clientFor(ctx, scope)
	if err != nil {
		return err
	}
	if err := removeRunner(ctx, g, t, id); err != nil {
		return fmt.Errorf("github: remove runner %d in %s: %w", id, scope, err)
	}
	c.views.removed(scope, id)
	return nil
}

func removeRunner(ctx context.Context, g *gh.Client, t target, id int64) error {
	var err error
	if t.repo != "" {
		_, err = g.Actions.RemoveRunner(ctx, t.owner, t.repo, id)
	} else {
		_, err = g.Actions.RemoveOrganizationRunner(ctx, t.org, id)
	}
	switch statusOf(err) {
	case http.StatusNotFound:
		return nil
	case http.StatusUnprocessableEntity:
		return fmt.Errorf("%w (GitHub answered 422): %w", ErrRunnerBusy, err)
	}
	return err
}

func scopeNoun(t target) string {
	if t.repo != "" {
		return "repository"
	}
	return "organization"
}

func toRunner(r *gh.Runner) provisioner.Runner {
	out := provisioner.Runner{
		ID:     r.GetID(),
		Name:   r.GetName(),
		Status: r.GetStatus(),
		Busy:   r.GetBusy(),
	}
	for _, l := range r.Labels {
		out.Labels = append(out.Labels, l.GetName())
	}
	return out
}
