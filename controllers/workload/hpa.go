package workload

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// MirrorHPA keeps, for each autoscaling/v2 HorizontalPodAutoscaler in the
// namespace that scales the target Deployment, a twin <hpa>-primary with the
// same spec that scales the primary instead, owned by ro. Twins whose source
// is gone are deleted. It writes only when something differs and reports
// whether it wrote, and whether a HorizontalPodAutoscaler (the user's, or
// KEDA's) scales the target (see TargetHasHPA), from the same list.
//
// The HorizontalPodAutoscalers that KEDA makes for its ScaledObjects are
// not mirrored: KEDA makes the primary's from the ScaledObject's twin (see
// MirrorScaledObjects).
//
// The user's HorizontalPodAutoscaler keeps scaling the target; Kubernetes
// leaves a target scaled to zero alone (unless the HorizontalPodAutoscaler's
// minReplicas is 0), so it does not wake the target between releases.
func MirrorHPA(ctx context.Context, c client.Client, ro *backstopv1.Rollout, names Names) (changed, sized bool, _ error) {
	var list autoscalingv2.HorizontalPodAutoscalerList
	if err := c.List(ctx, &list, client.InNamespace(names.Namespace)); err != nil {
		return false, false, fmt.Errorf("listing horizontalpodautoscalers in %s: %w", names.Namespace, err)
	}
	sources := map[string]*autoscalingv2.HorizontalPodAutoscaler{}
	var twins []*autoscalingv2.HorizontalPodAutoscaler
	for i := range list.Items {
		h := &list.Items[i]
		sized = sized || scalesDeployment(h, names.Target)
		switch {
		case ownedBy(ro, h) && h.Annotations[HPASourceAnnotation] != "":
			twins = append(twins, h)
		case !madeByKEDA(h) && scalesDeployment(h, names.Target):
			sources[h.Name] = h
		}
	}
	for _, t := range twins {
		if _, ok := sources[t.Annotations[HPASourceAnnotation]]; ok {
			continue
		}
		err := c.Delete(ctx, t, client.Preconditions{UID: &t.UID, ResourceVersion: &t.ResourceVersion})
		if err != nil && !apierrors.IsNotFound(err) {
			return changed, sized, fmt.Errorf("deleting horizontalpodautoscaler %s/%s: %w", t.Namespace, t.Name, err)
		}
		changed = changed || err == nil
	}
	for _, src := range sources {
		ch, err := ensureTwin(ctx, c, ro, src, names.Primary)
		if err != nil {
			return changed, sized, err
		}
		changed = changed || ch
	}
	return changed, sized, nil
}

// scalesDeployment says whether h scales the apps Deployment name.
func scalesDeployment(h *autoscalingv2.HorizontalPodAutoscaler, name string) bool {
	target, ok := HPATarget(h)
	return ok && target == name
}

// HPATarget returns the name of the apps Deployment that h scales; ok is
// false when h scales another kind.
func HPATarget(h *autoscalingv2.HorizontalPodAutoscaler) (name string, ok bool) {
	ref := h.Spec.ScaleTargetRef
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil || gv.Group != "apps" || ref.Kind != "Deployment" || ref.Name == "" {
		return "", false
	}
	return ref.Name, true
}

// madeByKEDA says whether KEDA made h for a ScaledObject: h's owner is a
// keda.sh ScaledObject.
func madeByKEDA(h *autoscalingv2.HorizontalPodAutoscaler) bool {
	for _, ref := range h.OwnerReferences {
		gv, err := schema.ParseGroupVersion(ref.APIVersion)
		if err == nil && gv.Group == ScaledObjectGVK.Group && ref.Kind == ScaledObjectGVK.Kind {
			return true
		}
	}
	return false
}

// UserHPATarget is HPATarget for the HorizontalPodAutoscalers MirrorHPA
// mirrors: ok is false for one that KEDA made.
func UserHPATarget(h *autoscalingv2.HorizontalPodAutoscaler) (name string, ok bool) {
	if madeByKEDA(h) {
		return "", false
	}
	return HPATarget(h)
}

// TargetHasHPA says whether an autoscaling/v2 HorizontalPodAutoscaler in
// names.Namespace scales the target Deployment: the user's, or KEDA's for
// a ScaledObject that runs.
func TargetHasHPA(ctx context.Context, r client.Reader, names Names) (bool, error) {
	var list autoscalingv2.HorizontalPodAutoscalerList
	if err := r.List(ctx, &list, client.InNamespace(names.Namespace)); err != nil {
		return false, fmt.Errorf("listing horizontalpodautoscalers in %s: %w", names.Namespace, err)
	}
	for i := range list.Items {
		if scalesDeployment(&list.Items[i], names.Target) {
			return true, nil
		}
	}
	return false, nil
}

// ScaleFromZero scales the Deployment key to replicas through its scale
// subresource when it runs none, and leaves it alone otherwise: for a
// Deployment that an autoscaler sizes once it runs. It reports whether it
// wrote.
func ScaleFromZero(ctx context.Context, c client.Client, key types.NamespacedName, replicas int32) (bool, error) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	var s autoscalingv1.Scale
	if err := c.SubResource("scale").Get(ctx, d, &s); err != nil {
		return false, fmt.Errorf("reading the scale of deployment %s: %w", key, err)
	}
	if s.Spec.Replicas != 0 {
		return false, nil
	}
	s.Spec.Replicas = replicas
	if err := c.SubResource("scale").Update(ctx, d, client.WithSubResourceBody(&s)); err != nil {
		return false, fmt.Errorf("scaling deployment %s to %d: %w", key, replicas, err)
	}
	return true, nil
}

func ensureTwin(ctx context.Context, c client.Client, ro *backstopv1.Rollout, src *autoscalingv2.HorizontalPodAutoscaler, primary string) (bool, error) {
	spec := *src.Spec.DeepCopy()
	spec.ScaleTargetRef.Name = primary
	name := src.Name + PrimarySuffix
	var cur autoscalingv2.HorizontalPodAutoscaler
	err := c.Get(ctx, types.NamespacedName{Namespace: src.Namespace, Name: name}, &cur)
	if apierrors.IsNotFound(err) {
		h := &autoscalingv2.HorizontalPodAutoscaler{
			ObjectMeta: metav1.ObjectMeta{
				Namespace:   src.Namespace,
				Name:        name,
				Annotations: map[string]string{HPASourceAnnotation: src.Name},
			},
			Spec: spec,
		}
		if err := own(c, ro, h); err != nil {
			return false, err
		}
		if err := c.Create(ctx, h); err != nil {
			if apierrors.IsAlreadyExists(err) {
				// Made already, by the reconcile the cache has not yet
				// caught up with, or by someone else: the next look
				// tells, and refuses a twin another controller owns.
				return false, nil
			}
			return false, fmt.Errorf("creating horizontalpodautoscaler %s/%s: %w", h.Namespace, h.Name, err)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading horizontalpodautoscaler %s/%s: %w", src.Namespace, name, err)
	}
	want := cur.DeepCopy()
	if err := own(c, ro, want); err != nil {
		return false, err
	}
	if want.Annotations == nil {
		want.Annotations = map[string]string{}
	}
	want.Annotations[HPASourceAnnotation] = src.Name
	want.Spec = spec
	if equality.Semantic.DeepEqual(&cur, want) {
		return false, nil
	}
	if err := c.Update(ctx, want); err != nil {
		return false, fmt.Errorf("updating horizontalpodautoscaler %s/%s: %w", want.Namespace, want.Name, err)
	}
	return want.ResourceVersion != cur.ResourceVersion, nil
}
