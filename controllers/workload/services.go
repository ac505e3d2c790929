package workload

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// EnsureServices creates or updates the two Services of ro:
// <service>-primary selecting the primary's pods and <service>-canary
// selecting the target's pods. Each has one TCP port, spec.service.port, to
// spec.service.targetPort (default: the same port), named
// spec.service.portName (default "http", or "grpc" when every route is a
// GRPCRoute), with spec.service.appProtocol when set; ro is the controller
// owner. Fields the API server fills in (clusterIP, ...) are left alone. It
// writes only when something differs and reports whether it wrote.
//
// The selectors are the matchLabels of the Deployments' selectors; a
// selector's matchExpressions cannot be expressed in a Service.
//
// The Services carry the labels of ServiceLabels, by which the manager's
// cache holds only them (ServiceCacheSelector). A Service of that name that
// c does not see (made before it had them, or a person's, taken over as
// before) is read with uncached and gets them; uncached may be nil when c
// sees every Service.
func EnsureServices(ctx context.Context, c client.Client, uncached client.Reader, ro *backstopv1.Rollout, target *appsv1.Deployment) (bool, error) {
	names := NamesFor(ro)
	primarySel, err := primarySelector(target.Spec.Selector)
	if err != nil {
		return false, fmt.Errorf("deployment %s/%s: %w", target.Namespace, target.Name, err)
	}
	port := ServicePort(ro)
	changed := false
	for _, s := range []struct {
		name     string
		selector map[string]string
	}{
		{names.PrimaryService, primarySel.MatchLabels},
		{names.CanaryService, target.Spec.Selector.MatchLabels},
	} {
		ch, err := ensureService(ctx, c, uncached, ro, s.name, s.selector, port)
		if err != nil {
			return changed, err
		}
		changed = changed || ch
	}
	return changed, nil
}

// ServicePort is the port of ro's Services.
func ServicePort(ro *backstopv1.Rollout) corev1.ServicePort {
	spec := ro.Spec.Service
	p := corev1.ServicePort{
		Name:        spec.PortName,
		Protocol:    corev1.ProtocolTCP,
		Port:        spec.Port,
		TargetPort:  intstr.FromInt32(spec.Port),
		AppProtocol: copyPtr(spec.AppProtocol),
	}
	if spec.TargetPort != nil {
		p.TargetPort = *spec.TargetPort
	}
	if p.Name == "" {
		p.Name = "http"
		if onlyGRPC(ro) {
			p.Name = "grpc"
		}
	}
	return p
}

func onlyGRPC(ro *backstopv1.Rollout) bool {
	for _, r := range ro.Spec.Routes {
		if r.Kind != backstopv1.GRPCRouteKind {
			return false
		}
	}
	return len(ro.Spec.Routes) > 0
}

// ServiceLabels are the labels of ro's Services.
func ServiceLabels(ro *backstopv1.Rollout) map[string]string {
	return map[string]string{backstopv1.LabelManagedBy: backstopv1.ManagedBy, backstopv1.LabelRollout: backstopv1.RolloutLabelValue(ro.Name)}
}

// ServiceCacheSelector selects the Services the manager reads: those
// EnsureServices makes. The cache then holds none of the cluster's other
// Services.
func ServiceCacheSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{backstopv1.LabelManagedBy: backstopv1.ManagedBy})
}

func ensureService(ctx context.Context, c client.Client, uncached client.Reader, ro *backstopv1.Rollout, name string, selector map[string]string, port corev1.ServicePort) (bool, error) {
	var cur corev1.Service
	key := types.NamespacedName{Namespace: ro.Namespace, Name: name}
	err := c.Get(ctx, key, &cur)
	if apierrors.IsNotFound(err) {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: name, Labels: ServiceLabels(ro)},
			Spec: corev1.ServiceSpec{
				Type:     corev1.ServiceTypeClusterIP,
				Selector: selector,
				Ports:    []corev1.ServicePort{port},
			},
		}
		if err := own(c, ro, svc); err != nil {
			return false, err
		}
		err = c.Create(ctx, svc)
		if err == nil {
			return true, nil
		}
		if !apierrors.IsAlreadyExists(err) || uncached == nil {
			return false, fmt.Errorf("creating service %s/%s: %w", svc.Namespace, svc.Name, err)
		}
		// It exists without the labels the cache selects by.
		err = uncached.Get(ctx, key, &cur)
	}
	if err != nil {
		return false, fmt.Errorf("reading service %s/%s: %w", ro.Namespace, name, err)
	}
	want := cur.DeepCopy()
	if err := own(c, ro, want); err != nil {
		return false, err
	}
	if want.Labels == nil {
		want.Labels = map[string]string{}
	}
	for k, v := range ServiceLabels(ro) {
		want.Labels[k] = v
	}
	want.Spec.Selector = selector
	want.Spec.Ports = []corev1.ServicePort{port}
	if len(cur.Spec.Ports) == 1 {
		// Keep what the server assigned to the port.
		want.Spec.Ports[0].NodePort = cur.Spec.Ports[0].NodePort
	}
	if equality.Semantic.DeepEqual(&cur, want) {
		return false, nil
	}
	if err := c.Update(ctx, want); err != nil {
		return false, fmt.Errorf("updating service %s/%s: %w", want.Namespace, want.Name, err)
	}
	return want.ResourceVersion != cur.ResourceVersion, nil
}
