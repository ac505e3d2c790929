package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// TestRunsAsAKubectlPlugin builds kubectl-backstop, puts it on the PATH and
// runs it through the real kubectl: kubectl finds the plugin, and the
// kubeconfig and namespace, as flags or from the environment, reach it.
func TestRunsAsAKubectlPlugin(t *testing.T) {
	ns := env.Namespace(t)
	create(t, rollout(ns, "shop-app", canarySteps()), &backstopv1.RolloutStatus{
		Phase: backstopv1.PhaseProgressing, CurrentStep: 2, CanaryWeight: 20, StableRevision: "5f6d7c8b9", CanaryRevision: "7c9d6f8b4",
	})

	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "kubectl-backstop"), ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// kubectl refuses flags before a plugin's name and hands the plugin
	// every argument after it, so the flags follow "backstop"; the
	// KUBECONFIG variable reaches the plugin through its environment.
	for _, tc := range []struct {
		args       []string
		kubeconfig string
		want       []string
	}{
		{[]string{"plugin", "list", "--name-only"}, "", []string{"kubectl-backstop"}},
		{[]string{"backstop", "get", "--kubeconfig", env.Kubeconfig, "-n", ns}, "", []string{"shop-app", "canary", "Progressing", "3/7", "20%", "7c9d6f8b4"}},
		{[]string{"backstop", "status", "shop-app", "--namespace", ns}, env.Kubeconfig, []string{"Rollout:", ns + "/shop-app", "primary 80%, canary 20%"}},
	} {
		cmd := exec.CommandContext(ctx, env.Kubectl, tc.args...)
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+tc.kubeconfig)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(tc.args, " "), err, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("kubectl %s printed no %q:\n%s", strings.Join(tc.args, " "), w, out)
			}
		}
	}
}
