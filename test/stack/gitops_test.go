//go:build e2e

package stack_test

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/stack"
)

// TestFaultyReleaseIsRevertedThroughFlux: the team's manifests live in the
// fleet repository and Flux applies them. A commit releasing v3 is rolled
// back, Backstop commits the revert of exactly that commit with its
// trailers, Flux applies the revert, and the Rollout is Idle on v2 with
// status.revert naming the revert commit.
func TestFaultyReleaseIsRevertedThroughFlux(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "gitops")
	deployment := func(version string) string {
		d := stack.Deployment("", "app", version, 0)
		d.Spec.Replicas = nil // Backstop scales the target
		return manifest(t, appsv1.SchemeGroupVersion.WithKind("Deployment").GroupVersion().String(), "Deployment", d)
	}
	ro := canaryRollout(ns, "app", "gitops.demo", 10*time.Second)
	ro.Spec.Revert = &backstopv1.RevertSpec{Author: &backstopv1.GitAuthor{Name: "Backstop", Email: "backstop@backstop.dev"}}
	rollout := ro.DeepCopy()
	rollout.Namespace = ""
	if _, err := s.Fleet.Commit(map[string]string{
		"apps/gitops/kustomization.yaml": "resources:\n- deployment.yaml\n- rollout.yaml\n",
		"apps/gitops/deployment.yaml":    deployment("v2"),
		"apps/gitops/rollout.yaml":       manifest(t, backstopv1.GroupVersion.String(), "Rollout", rollout),
	}, "Deploy app v2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Kustomization(ctx, "gitops", "./apps/gitops", ns); err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, ro, backstopv1.PhaseIdle, 2*time.Minute)

	// Traffic, so the check has something to judge.
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	go func() {
		for loadCtx.Err() == nil {
			get("http://"+s.Gateway+"/", "gitops.demo")
			time.Sleep(20 * time.Millisecond)
		}
	}()

	bad, err := s.Fleet.Commit(map[string]string{"apps/gitops/deployment.yaml": deployment("v3")}, "Deploy app v3")
	if err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, ro, backstopv1.PhaseRolledBack, 2*time.Minute)

	var revert string
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if head, err := s.Fleet.Head(); err == nil && head != bad {
			revert = head
			break
		}
	}
	if revert == "" {
		t.Fatalf("no revert of %.10s on the fleet repository (logs in %s)", bad, s.Dir)
	}
	repo := s.Fleet.Server.Dir(stack.FleetRepo)
	msg, err := s.Fleet.Server.Git(repo, "log", "-1", "--format=%an <%ae>%n%B", revert)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Backstop <backstop@backstop.dev>", `Revert "Deploy app v3"`, "check error-rate failed",
		"Reverts: " + bad, "Backstop-Rollout: " + ns + "/app"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the revert commit's message lacks %q:\n%s", want, msg)
		}
	}
	if diff, err := s.Fleet.Server.Git(repo, "diff", bad+"~1", revert, "--", "apps/gitops"); err != nil || diff != "" {
		t.Errorf("the revert does not bring apps/gitops back to before %.10s: %v\n%s", bad, err, diff)
	}

	for end := time.Now().Add(time.Minute); !strings.HasSuffix(s.AppliedRevision(ctx, "gitops"), revert); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("Flux applied %s, not the revert %.10s", s.AppliedRevision(ctx, "gitops"), revert)
		}
	}
	idle := waitForPhase(t, ro, backstopv1.PhaseIdle, time.Minute)
	for end := time.Now().Add(30 * time.Second); idle.Status.Revert == nil || idle.Status.Revert.State == backstopv1.RevertPending; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(end) {
			break
		}
		idle = waitForPhase(t, ro, backstopv1.PhaseIdle, time.Minute)
	}
	if st := idle.Status.Revert; st == nil || st.State != backstopv1.RevertPushed || st.Commit != revert ||
		len(st.Reverted) != 1 || st.Reverted[0].Commit != bad {
		t.Errorf("status.revert: %+v; want Pushed with commit %.10s reverting %.10s", st, revert, bad)
	}
}

// manifest is obj as a YAML manifest of apiVersion and kind, without status.
func manifest(t *testing.T, apiVersion, kind string, obj any) string {
	t.Helper()
	b, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "status")
	m["apiVersion"], m["kind"] = apiVersion, kind
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	out, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
