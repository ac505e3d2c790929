package workload_test

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/workload"
)

// TestSaveAndRestoreRevision keeps the primary's template, lets a promotion
// copy another one over it, and restores the kept one.
func TestSaveAndRestoreRevision(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	ro, tgt := rollout(ns), target(ns)
	create(t, ro, tgt)
	primary, _, err := workload.EnsurePrimary(ctx, env.Client, ro, tgt, tgt.Spec.Template, 2, workload.PrimaryConfigs{})
	if err != nil {
		t.Fatal(err)
	}
	v1 := workload.Revision(primary)

	if err := workload.SaveRevision(ctx, env.Client, ro, primary.Spec.Template); err != nil {
		t.Fatalf("SaveRevision: %v", err)
	}
	var cr appsv1.ControllerRevision
	get(t, ns, "web-"+v1, &cr)
	assertControlledBy(t, &cr, ro)
	if cr.Labels[workload.RolloutLabel] != "web" || cr.Revision != 1 || cr.Annotations[workload.TemplateHashAnnotation] != v1 {
		t.Errorf("controllerrevision labels %v, annotations %v, revision %d; want %s=web, %s=%s, revision 1",
			cr.Labels, cr.Annotations, cr.Revision, workload.RolloutLabel, workload.TemplateHashAnnotation, v1)
	}
	// The template is kept as the target carries it, without the primary's
	// label rewrite.
	if s := string(cr.Data.Raw); strings.Contains(s, "web-primary") || strings.Contains(s, workload.PrimaryLabelsAnnotation) {
		t.Errorf("the kept template carries the primary's rewrites: %s", s)
	}

	// Saving again writes nothing.
	if err := workload.SaveRevision(ctx, env.Client, ro, primary.Spec.Template); err != nil {
		t.Fatalf("second SaveRevision: %v", err)
	}
	var again appsv1.ControllerRevision
	get(t, ns, "web-"+v1, &again)
	if again.ResourceVersion != cr.ResourceVersion {
		t.Errorf("resourceVersion %s -> %s after saving the same revision again", cr.ResourceVersion, again.ResourceVersion)
	}

	// A promotion copies v2 over the primary.
	tgt.Spec.Template.Spec.Containers[0].Image = "web:v2"
	if err := env.Client.Update(ctx, tgt); err != nil {
		t.Fatal(err)
	}
	if primary, _, err = workload.EnsurePrimary(ctx, env.Client, ro, tgt, tgt.Spec.Template, 2, workload.PrimaryConfigs{}); err != nil {
		t.Fatal(err)
	}
	if workload.Revision(primary) == v1 {
		t.Fatal("the primary still runs v1 after the promotion")
	}

	// Restore v1.
	tmpl, _, err := workload.RevisionTemplate(ctx, env.Client, ro, v1)
	if err != nil {
		t.Fatalf("RevisionTemplate: %v", err)
	}
	if workload.TemplateHash(tmpl) != v1 {
		t.Errorf("RevisionTemplate returned revision %s, want %s", workload.TemplateHash(tmpl), v1)
	}
	restored, changed, err := workload.EnsurePrimary(ctx, env.Client, ro, tgt, tmpl, 2, workload.PrimaryConfigs{})
	if err != nil || !changed {
		t.Fatalf("EnsurePrimary with the kept template: changed=%v err=%v, want an update", changed, err)
	}
	var got appsv1.Deployment
	get(t, ns, "web-primary", &got)
	if workload.Revision(&got) != v1 || got.Annotations[workload.TemplateHashAnnotation] != v1 || got.Spec.Template.Spec.Containers[0].Image != "web:v1" {
		t.Errorf("after the restore: revision %s, annotation %s, image %s; want %s and web:v1",
			workload.Revision(&got), got.Annotations[workload.TemplateHashAnnotation], got.Spec.Template.Spec.Containers[0].Image, v1)
	}
	if got.Spec.Template.Labels["app"] != "web-primary" {
		t.Errorf("restored pod labels %v: the primary's selector label must be rewritten", got.Spec.Template.Labels)
	}
	// Restoring again writes nothing.
	if _, changed, err := workload.EnsurePrimary(ctx, env.Client, ro, tgt, tmpl, 2, workload.PrimaryConfigs{}); err != nil || changed {
		t.Errorf("second restore: changed=%v err=%v, want no change", changed, err)
	}
	get(t, ns, "web-primary", &got)
	if got.ResourceVersion != restored.ResourceVersion {
		t.Errorf("resourceVersion %s -> %s after restoring again", restored.ResourceVersion, got.ResourceVersion)
	}
}

func TestRevisionTemplateNotKept(t *testing.T) {
	ns := env.Namespace(t)
	ro := rollout(ns)
	create(t, ro)
	_, _, err := workload.RevisionTemplate(context.Background(), env.Client, ro, "0123456789")
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "the template of revision 0123456789 was not kept") {
		t.Errorf("error %v, want a not-found error that names the revision", err)
	}
}

// TestRevisionOfAnotherOwner: a ControllerRevision of the same name that
// Backstop did not make for this Rollout is neither taken over nor
// restored.
func TestRevisionOfAnotherOwner(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	ro, tgt := rollout(ns), target(ns)
	create(t, ro)
	rev := workload.TemplateHash(tgt.Spec.Template)
	foreign := &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-" + rev,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", UID: "1234", Controller: ptr.To(true)}}},
		Data: runtime.RawExtension{Raw: []byte(`{"spec":{"containers":[{"name":"web","image":"other"}]}}`)},
	}
	create(t, foreign)
	if err := workload.SaveRevision(ctx, env.Client, ro, tgt.Spec.Template); err == nil || !strings.Contains(err.Error(), "does not belong to Rollout") {
		t.Errorf("SaveRevision: error %v, want one saying the ControllerRevision belongs to someone else", err)
	}
	if _, _, err := workload.RevisionTemplate(ctx, env.Client, ro, rev); err == nil || !strings.Contains(err.Error(), "does not belong to Rollout") {
		t.Errorf("RevisionTemplate: error %v, want one saying the ControllerRevision belongs to someone else", err)
	}
}

func TestPruneRevisions(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	ro := rollout(ns)
	other := rollout(ns, func(r *backstopv1.Rollout) { r.Name = "other" })
	create(t, ro, other)
	version := func(image string) corev1.PodTemplateSpec {
		tmpl := target(ns).Spec.Template
		tmpl.Spec.Containers[0].Image = image
		return tmpl
	}
	var revs []string
	for _, image := range []string{"web:v1", "web:v2", "web:v3", "web:v4", "web:v5"} {
		tmpl := version(image)
		if err := workload.SaveRevision(ctx, env.Client, ro, tmpl); err != nil {
			t.Fatal(err)
		}
		revs = append(revs, workload.TemplateHash(tmpl))
	}
	// Another Rollout's template is not counted nor pruned.
	if err := workload.SaveRevision(ctx, env.Client, other, version("web:v0")); err != nil {
		t.Fatal(err)
	}
	kept := func() map[string]bool {
		var list appsv1.ControllerRevisionList
		if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, cr := range list.Items {
			out[cr.Name] = true
		}
		return out
	}

	// The oldest is kept when asked.
	if err := workload.PruneRevisions(ctx, env.Client, ro, revs[0]); err != nil {
		t.Fatalf("PruneRevisions: %v", err)
	}
	got := kept()
	for i, want := range []bool{true, false, true, true, true} {
		if got["web-"+revs[i]] != want {
			t.Errorf("after pruning with v1 kept: web-%s (v%d) kept=%v, want %v", revs[i], i+1, got["web-"+revs[i]], want)
		}
	}
	if len(got) != 5 {
		t.Errorf("%d ControllerRevisions left, want 4 of web and 1 of other: %v", len(got), got)
	}

	if err := workload.PruneRevisions(ctx, env.Client, ro); err != nil {
		t.Fatalf("PruneRevisions: %v", err)
	}
	got = kept()
	for i, want := range []bool{false, false, true, true, true} {
		if got["web-"+revs[i]] != want {
			t.Errorf("after pruning: web-%s (v%d) kept=%v, want %v", revs[i], i+1, got["web-"+revs[i]], want)
		}
	}
	if len(got) != 4 {
		t.Errorf("%d ControllerRevisions left, want 3 of web and 1 of other: %v", len(got), got)
	}

	// Saving an older template again leaves it as it was: its place in the
	// order is that of its first save.
	if err := workload.SaveRevision(ctx, env.Client, ro, version("web:v1")); err != nil {
		t.Fatal(err)
	}
	var cr appsv1.ControllerRevision
	get(t, ns, "web-"+revs[0], &cr)
	if cr.Revision != 6 {
		t.Errorf("re-created web:v1 has revision %d, want 6 (after the 5 before it)", cr.Revision)
	}
}

func TestRevisionNames(t *testing.T) {
	long := strings.Repeat("a", 120) + "." + strings.Repeat("b", 132) // 253 characters
	for _, tc := range []struct {
		name          string
		wantName      string
		wantLabel     string
		wantCutLength bool
	}{
		{name: "web", wantName: "web-0123456789", wantLabel: "web"},
		{name: long, wantCutLength: true},
		{name: strings.Repeat("c", 63), wantName: strings.Repeat("c", 63) + "-0123456789", wantLabel: strings.Repeat("c", 63)},
	} {
		ro := &backstopv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: tc.name}}
		name, label := workload.RevisionName(ro, "0123456789"), workload.RolloutLabelValue(ro)
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			t.Errorf("RevisionName(%s) = %s: %v", tc.name, name, errs)
		}
		if errs := validation.IsValidLabelValue(label); len(errs) > 0 {
			t.Errorf("RolloutLabelValue(%s) = %s: %v", tc.name, label, errs)
		}
		if tc.wantCutLength {
			if len(name) != 253 || !strings.HasSuffix(name, "-0123456789") || len(label) != 63 {
				t.Errorf("RevisionName(%d characters) = %s (%d), RolloutLabelValue = %s (%d); want 253 and 63 characters",
					len(tc.name), name, len(name), label, len(label))
			}
			continue
		}
		if name != tc.wantName || label != tc.wantLabel {
			t.Errorf("RevisionName(%s) = %s, RolloutLabelValue = %s; want %s and %s", tc.name, name, label, tc.wantName, tc.wantLabel)
		}
	}
	// Two long names that share their beginning stay apart.
	a := &backstopv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("x", 250) + "a"}}
	b := &backstopv1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("x", 250) + "b"}}
	if workload.RevisionName(a, "0123456789") == workload.RevisionName(b, "0123456789") || workload.RolloutLabelValue(a) == workload.RolloutLabelValue(b) {
		t.Error("two long Rollout names that differ only at the end have the same ControllerRevision name or label")
	}
}
