package workload_test

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"backstop.dev/backstop/controllers/workload"
)

// TestHandBackTemplate: the template the target gets back is the one it
// gave the primary, with the primary's label rewrite and annotations
// undone, so it hashes as the primary's revision and its labels match the
// target's selector.
func TestHandBackTemplate(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	ro, tgt := rollout(ns), target(ns)
	create(t, ro, tgt)
	primary, _, err := workload.EnsurePrimary(ctx, env.Client, ro, tgt, tgt.Spec.Template, 3, workload.PrimaryConfigs{})
	if err != nil {
		t.Fatal(err)
	}
	got := workload.HandBackTemplate(primary)
	if !equality.Semantic.DeepEqual(got, tgt.Spec.Template) {
		t.Errorf("HandBackTemplate = %+v\nwant the target's own template %+v", got, tgt.Spec.Template)
	}
	if workload.TemplateHash(got) != workload.Revision(primary) {
		t.Errorf("HandBackTemplate hashes %s; want the primary's revision %s", workload.TemplateHash(got), workload.Revision(primary))
	}
}

// TestRestoreTemplate: a target that runs another version than the
// primary gets the primary's template, once; a target read before a change
// is not written over it.
func TestRestoreTemplate(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	ro, tgt := rollout(ns), target(ns)
	create(t, ro, tgt)
	primary, _, err := workload.EnsurePrimary(ctx, env.Client, ro, tgt, tgt.Spec.Template, 3, workload.PrimaryConfigs{})
	if err != nil {
		t.Fatal(err)
	}
	// The release of v2: the target runs it, with an annotation of its own.
	patch := client.MergeFrom(tgt.DeepCopy())
	tgt.Spec.Template.Spec.Containers[0].Image = "web:v2"
	tgt.Spec.Template.Annotations["rollme"] = "1"
	if err := env.Client.Patch(ctx, tgt, patch); err != nil {
		t.Fatal(err)
	}
	stale := tgt.DeepCopy()

	wrote, err := workload.RestoreTemplate(ctx, env.Client, tgt, primary)
	if err != nil || !wrote {
		t.Fatalf("RestoreTemplate: wrote=%v err=%v; want a write", wrote, err)
	}
	var got appsv1.Deployment
	get(t, ns, "web", &got)
	if workload.Revision(&got) != workload.Revision(primary) {
		t.Errorf("the target runs revision %s; want the primary's %s", workload.Revision(&got), workload.Revision(primary))
	}
	if img := got.Spec.Template.Spec.Containers[0].Image; img != "web:v1" {
		t.Errorf("the target runs %s; want the primary's web:v1", img)
	}
	if _, ok := got.Spec.Template.Annotations["rollme"]; ok {
		t.Errorf("the target's template kept the released version's annotation: %v", got.Spec.Template.Annotations)
	}
	if got.Spec.Template.Labels["app"] != "web" || got.Spec.Template.Annotations[workload.PrimaryLabelsAnnotation] != "" {
		t.Errorf("the target's template has labels %v and annotations %v; want the primary's rewrite undone",
			got.Spec.Template.Labels, got.Spec.Template.Annotations)
	}
	if *got.Spec.Replicas != *tgt.Spec.Replicas || got.Spec.MinReadySeconds != tgt.Spec.MinReadySeconds {
		t.Errorf("fields other than the template changed")
	}

	if wrote, err := workload.RestoreTemplate(ctx, env.Client, &got, primary); err != nil || wrote {
		t.Errorf("RestoreTemplate again: wrote=%v err=%v; want nothing written", wrote, err)
	}
	// A copy from before the last write: the write is refused, not made
	// over what changed.
	stale.Spec.Template.Spec.Containers[0].Image = "web:v3"
	if _, err := workload.RestoreTemplate(ctx, env.Client, stale, primary); !apierrors.IsConflict(err) {
		t.Errorf("RestoreTemplate from a stale copy: %v; want a conflict", err)
	}
}

// TestScaleUp: the target is raised to the primary's size, never lowered
// below what an autoscaler made it.
func TestScaleUp(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	tgt := target(ns)
	tgt.Spec.Replicas = ptr.To[int32](0)
	create(t, tgt)
	key := client.ObjectKeyFromObject(tgt)
	for _, step := range []struct {
		name      string
		set       *int32
		to        int32
		wantWrote bool
		want      int32
	}{
		{"from zero", nil, 3, true, 3},
		{"already there", nil, 3, false, 3},
		{"from a canary's size", ptr.To[int32](1), 3, true, 3},
		{"above it, as an autoscaler made it", ptr.To[int32](7), 3, false, 7},
	} {
		if step.set != nil {
			if _, err := workload.Scale(ctx, env.Client, key, *step.set); err != nil {
				t.Fatal(err)
			}
		}
		wrote, err := workload.ScaleUp(ctx, env.Client, key, step.to)
		if err != nil || wrote != step.wantWrote {
			t.Fatalf("%s: ScaleUp to %d: wrote=%v err=%v; want wrote=%v", step.name, step.to, wrote, err, step.wantWrote)
		}
		var d appsv1.Deployment
		get(t, ns, "web", &d)
		if *d.Spec.Replicas != step.want {
			t.Errorf("%s: %d replicas; want %d", step.name, *d.Spec.Replicas, step.want)
		}
	}
}

// TestDisown: the Rollout's owner reference goes and every other stays; a
// second call writes nothing; a copy whose references moved since it was
// read is refused.
func TestDisown(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	ro, tgt := rollout(ns), target(ns)
	create(t, ro, tgt)
	if _, err := workload.EnsureServices(ctx, env.Client, nil, ro, tgt); err != nil {
		t.Fatal(err)
	}
	var svc corev1.Service
	get(t, ns, "web-canary", &svc)
	if !workload.ControlledBy(ro, &svc) {
		t.Fatalf("EnsureServices made a Service the Rollout does not control")
	}
	// Someone else's reference, before the Rollout's.
	other := metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "keeper", UID: "0e7b1f0c-keeper"}
	patch := client.MergeFrom(svc.DeepCopy())
	svc.OwnerReferences = append([]metav1.OwnerReference{other}, svc.OwnerReferences...)
	if err := env.Client.Patch(ctx, &svc, patch); err != nil {
		t.Fatal(err)
	}
	stale := svc.DeepCopy()

	if wrote, err := workload.Disown(ctx, env.Client, ro, &svc); err != nil || !wrote {
		t.Fatalf("Disown: wrote=%v err=%v; want a write", wrote, err)
	}
	var got corev1.Service
	get(t, ns, "web-canary", &got)
	if len(got.OwnerReferences) != 1 || got.OwnerReferences[0].UID != other.UID {
		t.Errorf("owner references %+v; want only the other owner's", got.OwnerReferences)
	}
	if workload.ControlledBy(ro, &got) {
		t.Errorf("the Rollout still controls the Service")
	}
	if wrote, err := workload.Disown(ctx, env.Client, ro, &got); err != nil || wrote {
		t.Errorf("Disown again: wrote=%v err=%v; want nothing written", wrote, err)
	}
	// The stale copy still shows the Rollout's reference at index 1, which
	// now is out of range: the guard refuses the patch.
	if _, err := workload.Disown(ctx, env.Client, ro, stale); err == nil {
		t.Errorf("Disown from a stale copy succeeded; want it refused")
	}
	get(t, ns, "web-canary", &got)
	if len(got.OwnerReferences) != 1 || got.OwnerReferences[0].UID != other.UID {
		t.Errorf("after a refused Disown, owner references %+v; want the other owner's kept", got.OwnerReferences)
	}
}
