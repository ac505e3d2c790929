package main

import (
	"context"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clocktesting "k8s.io/utils/clock/testing"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// TestMissingRollout checks that every command that names a Rollout says
// plainly that it does not exist, with exit code 1 and no usage.
func TestMissingRollout(t *testing.T) {
	ns := env.Namespace(t)
	want := `error: rollout "nope" not found in namespace "` + ns + `"` + "\n"
	for _, args := range [][]string{
		{"get", "nope"},
		{"status", "nope"},
		{"status", "nope", "--watch"},
		{"history", "nope"},
		{"promote", "nope"},
		{"abort", "nope"},
		{"retry", "nope"},
		{"pause", "nope"},
		{"resume", "nope"},
		{"skip-analysis", "nope"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			got := run(t, t0, append([]string{"-n", ns}, args...)...)
			if got.code != 1 || got.err != want || got.out != "" {
				t.Errorf("exit code %d, stdout %q, stderr %q; want 1, nothing and %q", got.code, got.out, got.err, want)
			}
		})
	}
}

// TestForbidden checks what a user without the rights hears: the verb,
// the namespace and the server's message, and no usage.
func TestForbidden(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	create(t, rollout(ns, "app", canarySteps()), &backstopv1.RolloutStatus{Phase: backstopv1.PhaseProgressing})

	// reader may read Rollouts in ns, and nothing else.
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rollout-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"backstop.dev"}, Resources: []string{"rollouts"}, Verbs: []string{"get", "list", "watch"}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rollout-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "reader"}},
	}
	if err := env.Client.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	nobody := env.UserKubeconfig(t, "nobody")
	reader := env.UserKubeconfig(t, "reader")

	for _, tc := range []struct {
		name       string
		kubeconfig string
		args       []string
		want       string
	}{
		{"list", nobody, []string{"get"},
			`error: you may not list rollouts in namespace "` + ns + `": rollouts.backstop.dev is forbidden: User "nobody" cannot list resource "rollouts" in API group "backstop.dev" in the namespace "` + ns + `"`},
		{"list all namespaces", nobody, []string{"get", "-A"},
			`error: you may not list rollouts in all namespaces: rollouts.backstop.dev is forbidden: User "nobody" cannot list resource "rollouts" in API group "backstop.dev" at the cluster scope`},
		{"get", nobody, []string{"status", "app"},
			`error: you may not get rollouts in namespace "` + ns + `": rollouts.backstop.dev "app" is forbidden: User "nobody" cannot get resource "rollouts" in API group "backstop.dev" in the namespace "` + ns + `"`},
		{"patch", reader, []string{"promote", "app"},
			`error: you may not patch rollouts in namespace "` + ns + `": rollouts.backstop.dev "app" is forbidden: User "reader" cannot patch resource "rollouts" in API group "backstop.dev" in the namespace "` + ns + `"`},
		{"patch spec", reader, []string{"pause", "app"},
			`error: you may not patch rollouts in namespace "` + ns + `": rollouts.backstop.dev "app" is forbidden: User "reader" cannot patch resource "rollouts" in API group "backstop.dev" in the namespace "` + ns + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := runWith(t, Options{Clock: clocktesting.NewFakePassiveClock(t0)}, tc.kubeconfig, append([]string{"-n", ns}, tc.args...)...)
			if got.code != 1 || got.err != tc.want+"\n" || got.out != "" {
				t.Errorf("exit code %d, stdout %q, stderr %q; want 1, nothing and %q", got.code, got.out, got.err, tc.want)
			}
		})
	}

	t.Run("status without the right to read Events", func(t *testing.T) {
		got := runWith(t, Options{Clock: clocktesting.NewFakePassiveClock(t0)}, reader, "-n", ns, "status", "app")
		if got.code != 0 || !strings.Contains(got.out, ns+"/app") {
			t.Fatalf("exit code %d, stdout %q; want 0 and the view", got.code, got.out)
		}
		if strings.Contains(got.out, "Events") {
			t.Errorf("the view has an Events section, though they could not be read:\n%s", got.out)
		}
		want := `Events left out: you may not list events in namespace "` + ns + `": `
		if !strings.HasPrefix(got.err, want) {
			t.Errorf("stderr %q; want it to start with %q", got.err, want)
		}
	})
}

// TestCRDsMissing checks the message for a cluster that does not serve
// Rollouts, by asking for a version of them that no cluster serves.
func TestCRDsMissing(t *testing.T) {
	ns := env.Namespace(t)
	o := Options{Clock: clocktesting.NewFakePassiveClock(t0), gv: schema.GroupVersion{Group: "backstop.dev", Version: "v1alpha9"}}
	for _, args := range [][]string{{"get"}, {"status", "app"}, {"promote", "app"}} {
		got := runWith(t, o, env.Kubeconfig, append([]string{"-n", ns}, args...)...)
		want := "error: Backstop's CRDs are not installed in this cluster: the cluster does not serve rollouts.backstop.dev/v1alpha9\n"
		if got.code != 1 || got.err != want {
			t.Errorf("%v: exit code %d, stderr %q; want 1 and %q", args, got.code, got.err, want)
		}
	}
}

// TestUsageErrors checks that a mistake in the command line points to the
// command's help.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"promote"}, "error: the name of a Rollout is required: kubectl backstop promote NAME [flags]\nSee 'kubectl backstop promote --help' for usage.\n"},
		{[]string{"abort", "a", "b"}, "error: one Rollout at a time, got 2 names: a b\nSee 'kubectl backstop abort --help' for usage.\n"},
		{[]string{"get", "-o", "table"}, "error: unknown output format \"table\": use one of wide, json, yaml\nSee 'kubectl backstop get --help' for usage.\n"},
		{[]string{"status", "app", "--timeout", "1m"}, "error: --timeout applies only with --watch\nSee 'kubectl backstop status --help' for usage.\n"},
		{[]string{"history", "app", "--bogus"}, "error: unknown flag: --bogus\nSee 'kubectl backstop history --help' for usage.\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			got := run(t, t0, tc.args...)
			if got.code != 1 || got.err != tc.want {
				t.Errorf("exit code %d, stderr %q; want 1 and %q", got.code, got.err, tc.want)
			}
		})
	}
}
