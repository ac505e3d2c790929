package workload

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Scale sets the replicas of the Deployment key through its scale
// subresource, so that no other field is touched. It writes only when the
// count differs and reports whether it wrote.
func Scale(ctx context.Context, c client.Client, key types.NamespacedName, replicas int32) (bool, error) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	var s autoscalingv1.Scale
	if err := c.SubResource("scale").Get(ctx, d, &s); err != nil {
		return false, fmt.Errorf("reading the scale of deployment %s: %w", key, err)
	}
	if s.Spec.Replicas == replicas {
		return false, nil
	}
	s.Spec.Replicas = replicas
	if err := c.SubResource("scale").Update(ctx, d, client.WithSubResourceBody(&s)); err != nil {
		return false, fmt.Errorf("scaling deployment %s to %d: %w", key, replicas, err)
	}
	return true, nil
}

// CanaryReplicas sizes the canary: replicaPercent (default 100) of the
// primary's replicas, rounded up, and at least one.
func CanaryReplicas(primaryReplicas int32, replicaPercent *int32) int32 {
	pct := int64(100)
	if replicaPercent != nil {
		pct = int64(*replicaPercent)
	}
	n := (int64(primaryReplicas)*pct + 99) / 100
	if n < 1 {
		return 1
	}
	return int32(n)
}
