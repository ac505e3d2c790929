package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// writers is how many objects the benchmark creates or changes at once.
const writers = 32

// The images of the releases: every target starts at imageV1, and the
// released ones move to imageV2.
const (
	imageV1 = "app:v1"
	imageV2 = "app:v2"
)

// layout places the Rollouts: perNamespace to a namespace, each with the
// Gateway "public"; pods spread over the nodes.
type layout struct {
	size         int
	perNamespace int
	nodes        []string
}

func (l layout) namespaces() int { return (l.size + l.perNamespace - 1) / l.perNamespace }

func (l layout) namespace(i int) string { return fmt.Sprintf("scale-%03d", i) }

// key is the namespace and name of Rollout i, and of its target.
func (l layout) key(i int) types.NamespacedName {
	return types.NamespacedName{Namespace: l.namespace(i / l.perNamespace), Name: fmt.Sprintf("app-%05d", i)}
}

// steps are the canary steps of every Rollout: two timed pauses, so each
// release has two steps whose due time is known.
func steps(pause time.Duration) []backstopv1.CanaryStep {
	return []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](10)},
		{Pause: &backstopv1.PauseStep{Duration: &metav1.Duration{Duration: pause}}},
		{SetWeight: ptr.To[int32](50)},
		{Pause: &backstopv1.PauseStep{Duration: &metav1.Duration{Duration: pause}}},
	}
}

// target is the Deployment Rollout i releases: one replica, on a kwok node
// when there are any.
func (l layout) target(i int) *appsv1.Deployment {
	key := l.key(i)
	labels := map[string]string{"app": key.Name}
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: imageV1,
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}}
	if len(l.nodes) > 0 {
		// Placed by name: kwok plays the node, and no scheduler is needed.
		spec.NodeName = l.nodes[i%len(l.nodes)]
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
}

// rollout is Rollout i: a canary through a generated HTTPRoute, with one
// check whose rendered query is the same for every Rollout.
func (l layout) rollout(i int, pause, interval time.Duration) *backstopv1.Rollout {
	key := l.key(i)
	return &backstopv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		Spec: backstopv1.RolloutSpec{
			TargetRef: backstopv1.TargetReference{Name: key.Name},
			Service:   backstopv1.ServiceSpec{Port: 8080},
			Routes:    []backstopv1.Route{{Name: key.Name, ParentRefs: []gwapiv1.ParentReference{{Name: "public"}}}},
			Strategy:  backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: steps(pause)}},
			Analysis: &backstopv1.AnalysisSpec{
				Interval: &metav1.Duration{Duration: interval},
				Checks: []backstopv1.Check{{
					Name:      "error-ratio",
					CheckSpec: backstopv1.CheckSpec{Query: sloSeries, Max: ptr.To(backstopv1.Decimal("0.01"))},
				}},
			},
		},
	}
}

// gateway is the Gateway of a namespace, which the stand-in does not
// look at but the Rollouts' validation requires.
func gateway(ns string) *gwapiv1.Gateway {
	return &gwapiv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "public"},
		Spec: gwapiv1.GatewaySpec{
			GatewayClassName: "bench",
			Listeners:        []gwapiv1.Listener{{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType}},
		},
	}
}

// createAll creates the namespaces with their Gateways, then each target
// and its Rollout.
func createAll(ctx context.Context, c client.Client, l layout, pause, interval time.Duration) error {
	for n := range l.namespaces() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: l.namespace(n)}}
		if err := c.Create(ctx, ns); err != nil {
			return err
		}
		if err := c.Create(ctx, gateway(ns.Name)); err != nil {
			return err
		}
	}
	return parallel(l.size, func(i int) error {
		if err := c.Create(ctx, l.target(i)); err != nil {
			return fmt.Errorf("creating Deployment %s: %w", l.key(i), err)
		}
		if err := c.Create(ctx, l.rollout(i, pause, interval)); err != nil {
			return fmt.Errorf("creating Rollout %s: %w", l.key(i), err)
		}
		return nil
	})
}

// released says whether Rollout i is one of the releases: every
// size/releases-th, so they spread over the namespaces.
func released(i, size, releases int) bool {
	return releases > 0 && i%(size/releases) == 0 && i/(size/releases) < releases
}

// startReleases moves the targets of the released Rollouts to imageV2, as
// a GitOps tool applying a commit would.
func startReleases(ctx context.Context, c client.Client, l layout, releases int) error {
	patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"` + imageV2 + `"}]}}}}`)
	return parallel(l.size, func(i int) error {
		if !released(i, l.size, releases) {
			return nil
		}
		key := l.key(i)
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		if err := c.Patch(ctx, d, client.RawPatch(types.StrategicMergePatchType, patch)); err != nil {
			return fmt.Errorf("changing the image of %s: %w", key, err)
		}
		return nil
	})
}

// parallel calls fn for 0..n-1 from writers goroutines and returns the
// first error.
func parallel(n int, fn func(int) error) error {
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					errOnce.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}
