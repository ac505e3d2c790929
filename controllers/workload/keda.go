package workload

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// KEDA's ScaledObjects are read and written as unstructured objects, so
// that Backstop depends on the kind's name and on the few fields below, not
// on KEDA's Go module.

// ScaledObjectGVK is KEDA's ScaledObject kind.
var ScaledObjectGVK = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}

const (
	// KEDAPausedReplicasAnnotation on a ScaledObject makes KEDA scale its
	// target to the annotation's count, delete its HorizontalPodAutoscaler
	// and stop autoscaling, until the annotation is removed.
	KEDAPausedReplicasAnnotation = "autoscaling.keda.sh/paused-replicas"

	// ScalerPauseAnnotation on a user's ScaledObject says that Backstop
	// paused it: its value is the KEDAPausedReplicasAnnotation value
	// Backstop wrote. Backstop removes only a pause so marked, so a pause a
	// person or another tool set is never removed.
	ScalerPauseAnnotation = AnnotationPrefix + "paused-scaler"

	// ScaledObjectSourceAnnotation on a primary ScaledObject names the
	// user's ScaledObject it mirrors.
	ScaledObjectSourceAnnotation = AnnotationPrefix + "scaledobject-source"

	// pausedReplicas is the count Backstop pauses a canary's ScaledObject
	// at: between releases the target runs no pods.
	pausedReplicas = "0"
)

// newScaledObjectList returns an empty list of ScaledObjects.
func newScaledObjectList() *unstructured.UnstructuredList {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(ScaledObjectGVK.GroupVersion().WithKind(ScaledObjectGVK.Kind + "List"))
	return list
}

// ScaledObjectTarget returns the name of the apps Deployment that so's
// spec.scaleTargetRef names; ok is false when it names another kind.
// KEDA's defaults apply: kind Deployment, apiVersion apps/v1.
func ScaledObjectTarget(so *unstructured.Unstructured) (name string, ok bool) {
	ref, found, err := unstructured.NestedMap(so.Object, "spec", "scaleTargetRef")
	if !found || err != nil {
		return "", false
	}
	name, _ = ref["name"].(string)
	kind, _ := ref["kind"].(string)
	apiVersion, _ := ref["apiVersion"].(string)
	if kind == "" {
		kind = "Deployment"
	}
	if apiVersion == "" {
		apiVersion = "apps/v1"
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil || gv.Group != "apps" || kind != "Deployment" || name == "" {
		return "", false
	}
	return name, true
}

// targetScaledObjects lists the ScaledObjects in names.Namespace: those
// that scale the target, by name, and the twins ro controls.
func targetScaledObjects(ctx context.Context, r client.Reader, ro *backstopv1.Rollout, names Names) (map[string]*unstructured.Unstructured, []*unstructured.Unstructured, error) {
	list := newScaledObjectList()
	if err := r.List(ctx, list, client.InNamespace(names.Namespace)); err != nil {
		return nil, nil, fmt.Errorf("listing scaledobjects in %s: %w", names.Namespace, err)
	}
	sources := map[string]*unstructured.Unstructured{}
	var twins []*unstructured.Unstructured
	for i := range list.Items {
		so := &list.Items[i]
		if ro != nil && ownedBy(ro, so) && so.GetAnnotations()[ScaledObjectSourceAnnotation] != "" {
			twins = append(twins, so)
			continue
		}
		if target, ok := ScaledObjectTarget(so); ok && target == names.Target {
			sources[so.GetName()] = so
		}
	}
	return sources, twins, nil
}

// TargetHasScaledObject says whether a ScaledObject in names.Namespace
// scales the target Deployment, read from r.
func TargetHasScaledObject(ctx context.Context, r client.Reader, names Names) (bool, error) {
	sources, _, err := targetScaledObjects(ctx, r, nil, names)
	return len(sources) > 0, err
}

// MirrorScaledObjects keeps, for each KEDA ScaledObject in the namespace
// that scales the target Deployment, a twin <scaledobject>-primary with the
// same spec that scales the primary instead, owned by ro and naming its
// source in ScaledObjectSourceAnnotation. Twins whose source is gone are
// deleted. It lists through r (the manager's cache) and writes through c,
// only when something differs, and reports whether it wrote.
//
// The spec is copied as it is, but for two names: spec.scaleTargetRef.name
// becomes the primary, and a custom name for KEDA's HorizontalPodAutoscaler
// (spec.advanced.horizontalPodAutoscalerConfig.name) gets PrimarySuffix, so
// the two ScaledObjects do not claim one HorizontalPodAutoscaler. Trigger
// metadata (queries that name the Deployment, for example) is not
// rewritten. The source's annotations are not copied, so the canary's
// pause (see PauseScaledObjects) never pauses the primary; annotations
// someone sets on the twin are kept.
//
// It also reports whether a ScaledObject scales the target (see
// TargetHasScaledObject), from the same list.
func MirrorScaledObjects(ctx context.Context, c client.Client, r client.Reader, ro *backstopv1.Rollout, names Names) (changed, sized bool, _ error) {
	sources, twins, err := targetScaledObjects(ctx, r, ro, names)
	if err != nil {
		return false, false, err
	}
	sized = len(sources) > 0
	current := map[string]*unstructured.Unstructured{}
	for _, t := range twins {
		if _, ok := sources[t.GetAnnotations()[ScaledObjectSourceAnnotation]]; ok {
			current[t.GetName()] = t
			continue
		}
		uid, rv := t.GetUID(), t.GetResourceVersion()
		err := c.Delete(ctx, t, client.Preconditions{UID: &uid, ResourceVersion: &rv})
		if err != nil && !apierrors.IsNotFound(err) {
			return changed, sized, fmt.Errorf("deleting scaledobject %s/%s: %w", t.GetNamespace(), t.GetName(), err)
		}
		changed = changed || err == nil
	}
	for _, src := range sources {
		ch, err := ensureScaledObjectTwin(ctx, c, ro, src, current[src.GetName()+PrimarySuffix], names.Primary)
		if err != nil {
			return changed, sized, err
		}
		changed = changed || ch
	}
	return changed, sized, nil
}

// twinSpec is the spec of the twin of src: src's, scaling primary.
func twinSpec(src *unstructured.Unstructured, primary string) (map[string]any, error) {
	spec, _, err := unstructured.NestedMap(src.Object, "spec")
	if err != nil {
		return nil, fmt.Errorf("scaledobject %s/%s: %w", src.GetNamespace(), src.GetName(), err)
	}
	if err := unstructured.SetNestedField(spec, primary, "scaleTargetRef", "name"); err != nil {
		return nil, err
	}
	path := []string{"advanced", "horizontalPodAutoscalerConfig", "name"}
	if hpa, found, _ := unstructured.NestedString(spec, path...); found && hpa != "" {
		if err := unstructured.SetNestedField(spec, hpa+PrimarySuffix, path...); err != nil {
			return nil, err
		}
	}
	return spec, nil
}

// ensureScaledObjectTwin creates or updates the twin of src; cur is the
// twin as listed, nil when there is none.
func ensureScaledObjectTwin(ctx context.Context, c client.Client, ro *backstopv1.Rollout, src, cur *unstructured.Unstructured, primary string) (bool, error) {
	spec, err := twinSpec(src, primary)
	if err != nil {
		return false, err
	}
	name := src.GetName() + PrimarySuffix
	if cur == nil {
		so := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
		so.SetGroupVersionKind(ScaledObjectGVK)
		so.SetNamespace(src.GetNamespace())
		so.SetName(name)
		so.SetAnnotations(map[string]string{ScaledObjectSourceAnnotation: src.GetName()})
		if err := own(c, ro, so); err != nil {
			return false, err
		}
		if err := c.Create(ctx, so); err != nil {
			if apierrors.IsAlreadyExists(err) {
				// Made already, by the reconcile the cache has not yet
				// caught up with, or by someone else: the next look
				// tells, and refuses a twin another controller owns.
				return false, nil
			}
			return false, fmt.Errorf("creating scaledobject %s/%s: %w", src.GetNamespace(), name, err)
		}
		return true, nil
	}
	want := cur.DeepCopy()
	if err := own(c, ro, want); err != nil {
		return false, err
	}
	ann := want.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[ScaledObjectSourceAnnotation] = src.GetName()
	want.SetAnnotations(ann)
	if err := unstructured.SetNestedMap(want.Object, spec, "spec"); err != nil {
		return false, err
	}
	if equality.Semantic.DeepEqual(cur.Object, want.Object) {
		return false, nil
	}
	if err := c.Update(ctx, want); err != nil {
		return false, fmt.Errorf("updating scaledobject %s/%s: %w", want.GetNamespace(), want.GetName(), err)
	}
	return want.GetResourceVersion() != cur.GetResourceVersion(), nil
}

// PauseScaledObjects pauses (pause true) or resumes the KEDA ScaledObjects
// in names.Namespace that scale the target Deployment: the canary's
// autoscalers. Pausing sets KEDAPausedReplicasAnnotation to "0", with
// ScalerPauseAnnotation to mark the pause as Backstop's; resuming removes
// both, and only when the pause is still Backstop's. A pause that someone
// else set, or changed, is left as it is (and Backstop's mark on it
// dropped). It lists through r and writes through c only the annotations,
// as a JSON merge patch that holds the resourceVersion it was decided on,
// so it never takes over the ScaledObject's other fields from the tool that
// applies it, and a pause set meanwhile is not removed. It reports whether
// it wrote.
func PauseScaledObjects(ctx context.Context, c client.Client, r client.Reader, names Names, pause bool) (bool, error) {
	sources, _, err := targetScaledObjects(ctx, r, nil, names)
	if err != nil {
		return false, err
	}
	changed := false
	for _, so := range sources {
		patch := pausePatch(so.GetAnnotations(), pause)
		if patch == nil {
			continue
		}
		body, err := json.Marshal(map[string]any{"metadata": map[string]any{
			"resourceVersion": so.GetResourceVersion(),
			"annotations":     patch,
		}})
		if err != nil {
			return changed, err
		}
		obj := &unstructured.Unstructured{}
		obj.SetGroupVersionKind(ScaledObjectGVK)
		obj.SetNamespace(so.GetNamespace())
		obj.SetName(so.GetName())
		if err := c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, body)); err != nil {
			verb := "resuming"
			if pause {
				verb = "pausing"
			}
			return changed, fmt.Errorf("%s scaledobject %s/%s: %w", verb, so.GetNamespace(), so.GetName(), err)
		}
		changed = true
	}
	return changed, nil
}

// pausePatch is the change to a ScaledObject's annotations that pauses it
// (pause) or resumes it, as a merge patch (nil values remove); nil when
// there is nothing to change.
func pausePatch(ann map[string]string, pause bool) map[string]any {
	value, paused := ann[KEDAPausedReplicasAnnotation]
	mark, marked := ann[ScalerPauseAnnotation]
	switch {
	case pause && !paused:
		return map[string]any{KEDAPausedReplicasAnnotation: pausedReplicas, ScalerPauseAnnotation: pausedReplicas}
	case paused && marked && mark == value:
		if pause {
			return nil
		}
		return map[string]any{KEDAPausedReplicasAnnotation: nil, ScalerPauseAnnotation: nil}
	case marked:
		// The pause was removed or changed by someone else: a changed
		// one is theirs, not Backstop's to remove.
		return map[string]any{ScalerPauseAnnotation: nil}
	}
	return nil
}
