package controllers_test

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/revert/source"
	"backstop.dev/backstop/test/testenv"
)

// fluxKustomization writes the revisions in a Kustomization's status the
// way kustomize-controller does: the one it attempts before it applies, the
// one it applied after.
type fluxKustomization struct {
	t  *testing.T
	ks *unstructured.Unstructured
}

// attempting records rev as the revision Flux is applying; the applied one
// stays as it was.
func (f fluxKustomization) attempting(rev string) {
	f.t.Helper()
	f.set("lastAttemptedRevision", rev)
}

// applied records rev as attempted and applied.
func (f fluxKustomization) applied(rev string) {
	f.t.Helper()
	f.set("lastAttemptedRevision", rev)
	f.set("lastAppliedRevision", rev)
}

func (f fluxKustomization) set(field, rev string) {
	f.t.Helper()
	if err := unstructured.SetNestedField(f.ks.Object, "main@sha1:"+rev, "status", field); err != nil {
		f.t.Fatal(err)
	}
	// Flux lists what it applied; Backstop trusts the target's labels only
	// when the Kustomization lists the target.
	inventory := []any{map[string]any{"id": f.ks.GetNamespace() + "_app_apps_Deployment", "v": "v1"}}
	if err := unstructured.SetNestedSlice(f.ks.Object, inventory, "status", "inventory", "entries"); err != nil {
		f.t.Fatal(err)
	}
	if err := env.Client.Status().Update(context.Background(), f.ks); err != nil {
		f.t.Fatal(err)
	}
}

// fluxSource makes ns's target look applied by Flux: a GitRepository for
// url (with secret, when given) and a Kustomization of path, whose labels it
// puts on the Deployment "app". The Kustomization's status starts empty.
func fluxSource(t *testing.T, ns, url, path, secret string) fluxKustomization {
	t.Helper()
	env.InstallGitOpsKinds(t)
	ctx := context.Background()
	repoSpec := map[string]any{"url": url, "ref": map[string]any{"branch": "main"}}
	if secret != "" {
		repoSpec["secretRef"] = map[string]any{"name": secret}
	}
	repo := &unstructured.Unstructured{Object: map[string]any{"spec": repoSpec}}
	repo.SetAPIVersion("source.toolkit.fluxcd.io/v1")
	repo.SetKind("GitRepository")
	repo.SetNamespace(ns)
	repo.SetName("fleet")
	ks := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"path": path, "sourceRef": map[string]any{"kind": "GitRepository", "name": "fleet"}}}}
	ks.SetAPIVersion("kustomize.toolkit.fluxcd.io/v1")
	ks.SetKind("Kustomization")
	ks.SetNamespace(ns)
	ks.SetName("apps")
	for _, obj := range []client.Object{repo, ks} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	var d appsv1.Deployment
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, &d); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(d.DeepCopy())
	d.Labels = map[string]string{source.FluxNameLabel: "apps", source.FluxNamespaceLabel: ns}
	if err := env.Client.Patch(ctx, &d, patch); err != nil {
		t.Fatal(err)
	}
	return fluxKustomization{t: t, ks: ks}
}

// TestSourceRevisions: with a target applied by Flux, the Rollout records
// the revision Flux applied: the stable one at initialisation, the
// candidate's during a release (also when only lastAppliedRevision names it,
// recorded after the release started), and the candidate's as stable once
// promoted.
func TestSourceRevisions(t *testing.T) {
	ns := releaseEnv(t)
	ctx := context.Background()
	const (
		revA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		revB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	)
	flux := fluxSource(t, ns, "https://git.example.com/fleet.git", "apps", "")
	flux.applied(revA)

	ro := releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](50)},
		{Pause: &backstopv1.PauseStep{}},
	}}})
	ro.Spec.Analysis = &backstopv1.AnalysisSpec{Interval: &metav1.Duration{Duration: time.Second}}
	mustCreate(t, ro)
	if idle := waitForPhase(t, ro, backstopv1.PhaseIdle, -1); idle.Status.StableSourceRevision != revA {
		t.Fatalf("stableSourceRevision after initialisation: %q; want %s", idle.Status.StableSourceRevision, revA)
	}

	// The Deployment changes before any revision names B.
	setImage(t, ns, "app:v2")
	waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	flux.applied(revB)
	testenv.Eventually(t, "canarySourceRevision is B", func() bool {
		var got backstopv1.Rollout
		return env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &got) == nil && got.Status.CanarySourceRevision == revB
	})

	setGate(t, ro, "promote")
	done := waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
	if done.Status.StableSourceRevision != revB {
		t.Errorf("stableSourceRevision after the promotion: %q; want %s", done.Status.StableSourceRevision, revB)
	}
}
