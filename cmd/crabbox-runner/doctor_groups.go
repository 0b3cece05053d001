package main

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/crabbox/crabbox-runner/github"
	"github.com/crabbox/crabbox-runner/internal/config"
	"github.com/crabbox/crabbox-runner/provisioner"
)

// checkRunnerGroups checks github.runner_group_id in each org scope: the
// group exists, its visibility is one crabbox-runner knows, and it lets in
// the repositories the classes take (public ones only when allowed). A
// runner registered in a group that cannot serve a job never gets it
// (docs "Managing access to self-hosted runners using groups"), so each
// problem here is a host paid for nothing.
func (g *ghCheck) checkRunnerGroups(ctx context.Context, scopes []provisioner.Scope) {
	public := publicClassesOf(g.cfg.Classes)
	for _, s := range scopes {
		if s.Repo != "" {
			continue // repository runners are not in an org's groups
		}
		what := "runner group in " + s.Key()
		id := g.cfg.GitHub.RunnerGroupID
		settings := fmt.Sprintf("%s/organizations/%s/settings/actions/runner-groups", g.web, s.Org)
		grp, err := g.gh.RunnerGroup(ctx, s)
		if err != nil {
			problem, fix := g.runnersProblem(err, s)
			g.d.fail(what, "reading runner group "+fmt.Sprint(id)+": "+problem, fix)
			continue
		}
		if !grp.Found {
			g.d.fail(what, fmt.Sprintf("runner group %d does not exist in %s: every org-scope job would get a host and no runner", id, s.Org),
				fmt.Sprintf("set github.runner_group_id to the id of one of %s's runner groups (%s; 1 is Default)", s.Org, settings))
			continue
		}
		name := fmt.Sprintf("%q (id %d)", grp.Name, id)
		groupPage := fmt.Sprintf("%s/%d", settings, id)
		switch grp.Visibility {
		case "all", "selected", "private":
		case "":
			g.d.fail(what, name+": GitHub's answer has no visibility; crabbox-runner rents nothing for its jobs until it does",
				"check the group at "+groupPage+" and run doctor again; if it persists, GitHub's API changed: report it")
			continue
		default:
			g.d.fail(what, fmt.Sprintf("%s has visibility %q, which crabbox-runner does not know; it rents nothing for its jobs", name, grp.Visibility),
				"set the group's repository access to all or selected repositories at "+groupPage)
			continue
		}
		allowsPublic := grp.AllowsPublic != nil && *grp.AllowsPublic
		if len(public) > 0 && (!allowsPublic || grp.Visibility == "private") {
			verb := "sets"
			if len(public) > 1 {
				verb = "set"
			}
			g.d.fail(what, fmt.Sprintf("%s does not let public repositories in, but %s (%s) %s public_repositories: true: their public jobs would get no runner",
				name, plural(len(public), "class", "classes"), strings.Join(public, ", "), verb),
				"tick \"Allow public repositories\" (and repository access other than private) at "+groupPage+", or set public_repositories: false on those classes")
			continue
		}
		if grp.Visibility == "selected" && grp.SelectedRepositories == 0 {
			g.d.fail(what, name+" is limited to selected repositories and none is selected: no job can use it",
				"add the repositories that run GPU jobs to the group at "+groupPage+", or open it to all repositories")
			continue
		}
		detail := name + ": " + describeGroup(grp)
		if grp.RestrictedToWorkflows {
			g.d.warn(what, detail+"; limited to selected workflows, which crabbox-runner cannot check: a job of another workflow gets a host but no runner",
				"clear the workflow restriction at "+groupPage+", or have only the selected workflows use the classes' labels")
			continue
		}
		if grp.AllowsPublic == nil {
			g.d.warn(what, detail+"; GitHub's answer does not say whether public repositories are allowed, so their jobs get no host",
				"check the group at "+groupPage+" and run doctor again")
			continue
		}
		g.d.ok(what, detail)
	}
}

// describeGroup says in a few words which repositories the group serves.
func describeGroup(grp github.RunnerGroupDetail) string {
	var who string
	switch grp.Visibility {
	case "all":
		who = "all repositories"
	case "selected":
		who = plural(grp.SelectedRepositories, "selected repository", "selected repositories")
		if grp.SelectedTruncated {
			who = "more than " + who
		}
	case "private":
		return "private repositories only"
	}
	if grp.AllowsPublic == nil {
		return who + ", public ones: GitHub did not say"
	}
	if *grp.AllowsPublic {
		return who + ", public ones allowed"
	}
	return who + ", public ones not allowed"
}

// publicClassesOf is publicClasses; a test stands in for the class setting
// when this build's config has none.
var publicClassesOf = publicClasses

// publicClasses names the classes that take jobs of public repositories.
// The setting (public_repositories) belongs to the class policy and may
// not exist in this build, so it is read by name: a bool or *bool field
// PublicRepositories that is true.
func publicClasses(classes []config.ClassConfig) []string {
	var out []string
	for _, c := range classes {
		if fieldTrue(c, "PublicRepositories") {
			out = append(out, c.Name)
		}
	}
	return out
}

func fieldTrue(v any, name string) bool {
	f := reflect.ValueOf(v).FieldByName(name)
	if !f.IsValid() {
		return false
	}
	if f.Kind() == reflect.Pointer {
		if f.IsNil() {
			return false
		}
		f = f.Elem()
	}
	return f.Kind() == reflect.Bool && f.Bool()
}
