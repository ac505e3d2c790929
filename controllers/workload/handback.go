package workload

import (
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// The hand-back gives a deleted Rollout's workload back to its target
// Deployment: the target runs the primary's template at the primary's size,
// and the objects that carry its traffic lose their owner reference to the
// Rollout, so the garbage collector leaves them. These functions are its
// writes; each is idempotent and writes only when something differs.

// HandBackTemplate is the pod template the target runs once it takes over
// from the primary: the primary's, with what Backstop wrote into it undone
// (the PrimarySuffix on the selector labels listed in
// PrimaryLabelsAnnotation, the refs to the config copies, which go with the
// Rollout, renamed back to the ConfigMaps and Secrets they copy, and
// Backstop's annotations). Its TemplateHash is the primary's.
func HandBackTemplate(primary *appsv1.Deployment) corev1.PodTemplateSpec {
	return normalize(primary.Spec.Template)
}

// RestoreTemplate writes HandBackTemplate(primary) into the target when the
// two run different templates (their TemplateHashes differ; the ConfigMaps
// and Secrets the target reads are its own, from Git, whatever the primary
// read through its copies), and reports whether it wrote. The write is a merge patch of the pod template alone, guarded
// by the resourceVersion target was read at: a target changed since (a
// GitOps tool applied a new commit) fails with a conflict instead of being
// overwritten unseen.
func RestoreTemplate(ctx context.Context, c client.Client, target, primary *appsv1.Deployment) (bool, error) {
	if TemplateHash(target.Spec.Template) == TemplateHash(primary.Spec.Template) {
		return false, nil
	}
	want := target.DeepCopy()
	want.Spec.Template = HandBackTemplate(primary)
	patch := client.MergeFromWithOptions(target, client.MergeFromWithOptimisticLock{})
	if err := c.Patch(ctx, want, patch); err != nil {
		return false, fmt.Errorf("writing the primary's template into deployment %s/%s: %w", target.Namespace, target.Name, err)
	}
	return true, nil
}

// ScaleUp raises the replicas of the Deployment key to replicas through its
// scale subresource when it has fewer, and never lowers them: an
// autoscaler that has since sized it larger is left alone. It reports
// whether it wrote.
func ScaleUp(ctx context.Context, c client.Client, key types.NamespacedName, replicas int32) (bool, error) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	var s autoscalingv1.Scale
	if err := c.SubResource("scale").Get(ctx, d, &s); err != nil {
		return false, fmt.Errorf("reading the scale of deployment %s: %w", key, err)
	}
	if s.Spec.Replicas >= replicas {
		return false, nil
	}
	s.Spec.Replicas = replicas
	if err := c.SubResource("scale").Update(ctx, d, client.WithSubResourceBody(&s)); err != nil {
		return false, fmt.Errorf("scaling deployment %s to %d: %w", key, replicas, err)
	}
	return true, nil
}

// ControlledBy says whether ro is the controller of obj.
func ControlledBy(ro *backstopv1.Rollout, obj client.Object) bool {
	return ownedBy(ro, obj)
}

// Disown removes ro's owner references from obj, as read, so that deleting
// ro leaves obj in place; it reports whether it wrote. An object without
// one is left alone.
//
// The write is a JSON patch that removes the references by index, each
// guarded by a test of the UID at that index: nothing else of obj is sent
// back, and an obj whose references moved since it was read fails the
// patch instead of losing someone else's reference.
func Disown(ctx context.Context, c client.Client, ro *backstopv1.Rollout, obj client.Object) (bool, error) {
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value,omitempty"`
	}
	var ops []op
	refs := obj.GetOwnerReferences()
	// From the last to the first, so that each removal leaves the indexes
	// of the ones before it as they were.
	for i := len(refs) - 1; i >= 0; i-- {
		if refs[i].UID != ro.UID {
			continue
		}
		path := fmt.Sprintf("/metadata/ownerReferences/%d", i)
		ops = append(ops, op{Op: "test", Path: path + "/uid", Value: string(ro.UID)}, op{Op: "remove", Path: path})
	}
	if len(ops) == 0 {
		return false, nil
	}
	data, err := json.Marshal(ops)
	if err != nil {
		return false, err
	}
	if err := c.Patch(ctx, obj, client.RawPatch(types.JSONPatchType, data)); err != nil {
		return false, fmt.Errorf("removing the owner reference to Rollout %s from %s %s/%s: %w",
			ro.Name, kindOf(c, obj), obj.GetNamespace(), obj.GetName(), err)
	}
	return true, nil
}
