package workload

import (
	"context"
	"fmt"

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
// whether it wrote.
//
// The user's HorizontalPodAutoscaler keeps scaling the target; Kubernetes
// leaves a target scaled to zero alone, so it does not wake the target
// between releases.
func MirrorHPA(ctx context.Context, c client.Client, ro *backstopv1.Rollout, names Names) (bool, error) {
	var list autoscalingv2.HorizontalPodAutoscalerList
	if err := c.List(ctx, &list, client.InNamespace(names.Namespace)); err != nil {
		return false, fmt.Errorf("listing horizontalpodautoscalers in %s: %w", names.Namespace, err)
	}
	sources := map[string]*autoscalingv2.HorizontalPodAutoscaler{}
	var twins []*autoscalingv2.HorizontalPodAutoscaler
	for i := range list.Items {
		h := &list.Items[i]
		switch {
		case ownedBy(ro, h) && h.Annotations[HPASourceAnnotation] != "":
			twins = append(twins, h)
		case scalesDeployment(h, names.Target):
			sources[h.Name] = h
		}
	}
	changed := false
	for _, t := range twins {
		if _, ok := sources[t.Annotations[HPASourceAnnotation]]; ok {
			continue
		}
		err := c.Delete(ctx, t, client.Preconditions{UID: &t.UID, ResourceVersion: &t.ResourceVersion})
		if err != nil && !apierrors.IsNotFound(err) {
			return changed, fmt.Errorf("deleting horizontalpodautoscaler %s/%s: %w", t.Namespace, t.Name, err)
		}
		changed = changed || err == nil
	}
	for _, src := range sources {
		ch, err := ensureTwin(ctx, c, ro, src, names.Primary)
		if err != nil {
			return changed, err
		}
		changed = changed || ch
	}
	return changed, nil
}

// scalesDeployment says whether h scales the apps Deployment name.
func scalesDeployment(h *autoscalingv2.HorizontalPodAutoscaler, name string) bool {
	ref := h.Spec.ScaleTargetRef
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	return err == nil && gv.Group == "apps" && ref.Kind == "Deployment" && ref.Name == name
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
