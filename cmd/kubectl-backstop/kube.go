package main

import (
	"context"
	"errors"
	"fmt"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	eventsclient "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// kube is the plugin's way to the cluster: Rollouts through a REST client
// for their API group, and their Events.
type kube struct {
	rollouts  rest.Interface
	params    runtime.ParameterCodec
	events    eventsclient.EventsV1Interface
	discovery discovery.DiscoveryInterface
	gv        schema.GroupVersion
	// namespace is that of the kubeconfig's context or of -n.
	namespace string
	// watchSeconds, when set, asks the server to end each watch after so
	// many seconds; tests use it to see watches started again.
	watchSeconds int64
}

// connect builds the clients from kubectl's flags. gv is the Rollouts'
// API version.
func connect(flags *genericclioptions.ConfigFlags, gv schema.GroupVersion) (*kube, error) {
	cfg, err := flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	ns, _, err := flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := backstopv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if gv != backstopv1.GroupVersion {
		scheme.AddKnownTypes(gv, &backstopv1.Rollout{}, &backstopv1.RolloutList{})
		metav1.AddToGroupVersion(scheme, gv)
	}
	rc := rest.CopyConfig(cfg)
	rc.GroupVersion = &gv
	rc.APIPath = "/apis"
	rc.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if rc.UserAgent == "" {
		rc.UserAgent = "kubectl-backstop"
	}
	rollouts, err := rest.RESTClientFor(rc)
	if err != nil {
		return nil, err
	}
	events, err := eventsclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &kube{
		rollouts:  rollouts,
		params:    runtime.NewParameterCodec(scheme),
		events:    events,
		discovery: disc,
		gv:        gv,
		namespace: ns,
	}, nil
}

func (k *kube) getRollout(ctx context.Context, name string) (*backstopv1.Rollout, error) {
	ro := &backstopv1.Rollout{}
	err := k.rollouts.Get().Namespace(k.namespace).Resource("rollouts").Name(name).Do(ctx).Into(ro)
	if err != nil {
		return nil, k.explain(err, "get", name, false)
	}
	return ro, nil
}

// listRollouts lists the Rollouts of the namespace, or of all namespaces.
func (k *kube) listRollouts(ctx context.Context, all bool, selector string) (*backstopv1.RolloutList, error) {
	list := &backstopv1.RolloutList{}
	req := k.rollouts.Get().Resource("rollouts").VersionedParams(&metav1.ListOptions{LabelSelector: selector}, k.params)
	if !all {
		req = req.Namespace(k.namespace)
	}
	if err := req.Do(ctx).Into(list); err != nil {
		return nil, k.explain(err, "list", "", all)
	}
	return list, nil
}

// patchRollout applies a JSON merge patch to the Rollout.
func (k *kube) patchRollout(ctx context.Context, name string, patch []byte) (*backstopv1.Rollout, error) {
	ro := &backstopv1.Rollout{}
	err := k.rollouts.Patch(types.MergePatchType).Namespace(k.namespace).Resource("rollouts").Name(name).Body(patch).Do(ctx).Into(ro)
	if err != nil {
		if apierrors.IsConflict(err) {
			return nil, err
		}
		return nil, k.explain(err, "patch", name, false)
	}
	return ro, nil
}

// watchRollout watches one Rollout from resourceVersion rv on.
func (k *kube) watchRollout(ctx context.Context, name, rv string) (watch.Interface, error) {
	opts := &metav1.ListOptions{
		Watch:           true,
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
		ResourceVersion: rv,
		TimeoutSeconds:  k.timeout(),
	}
	w, err := k.rollouts.Get().Namespace(k.namespace).Resource("rollouts").VersionedParams(opts, k.params).Watch(ctx)
	if err != nil {
		return nil, k.explain(err, "watch", name, false)
	}
	return w, nil
}

// eventSelector selects the Events that regard the Rollout, by its UID:
// a Rollout deleted and created again under the same name has others.
func eventSelector(ro *backstopv1.Rollout) string {
	return fields.OneTermEqualSelector("regarding.uid", string(ro.UID)).String()
}

func (k *kube) listEvents(ctx context.Context, ro *backstopv1.Rollout) (*eventsv1.EventList, error) {
	return k.events.Events(ro.Namespace).List(ctx, metav1.ListOptions{FieldSelector: eventSelector(ro)})
}

func (k *kube) watchEvents(ctx context.Context, ro *backstopv1.Rollout, rv string) (watch.Interface, error) {
	return k.events.Events(ro.Namespace).Watch(ctx, metav1.ListOptions{FieldSelector: eventSelector(ro), ResourceVersion: rv, TimeoutSeconds: k.timeout()})
}

func (k *kube) timeout() *int64 {
	if k.watchSeconds > 0 {
		return &k.watchSeconds
	}
	return nil
}

// errCRDsMissing says the cluster does not serve Rollouts.
var errCRDsMissing = errors.New("Backstop's CRDs are not installed in this cluster")

// explain turns an API error about Rollouts into a message for people.
// verb is what was refused; name is the Rollout's, empty for a list.
func (k *kube) explain(err error, verb, name string, all bool) error {
	where := fmt.Sprintf("in namespace %q", k.namespace)
	if all {
		where = "in all namespaces"
	}
	switch {
	case apierrors.IsNotFound(err):
		if !k.servesRollouts() {
			return fmt.Errorf("%w: the cluster does not serve rollouts.%s/%s", errCRDsMissing, k.gv.Group, k.gv.Version)
		}
		if name != "" {
			return fmt.Errorf("rollout %q not found %s", name, where)
		}
	case apierrors.IsForbidden(err):
		return fmt.Errorf("you may not %s rollouts %s: %s", verb, where, serverMessage(err))
	}
	return err
}

// servesRollouts asks discovery whether the cluster serves Rollouts. An
// error answers yes, so that the original error is shown.
func (k *kube) servesRollouts() bool {
	res, err := k.discovery.ServerResourcesForGroupVersion(k.gv.String())
	if err != nil {
		return !apierrors.IsNotFound(err)
	}
	for _, r := range res.APIResources {
		if r.Name == "rollouts" {
			return true
		}
	}
	return false
}

// serverMessage is the message of the API server's Status in err.
func serverMessage(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Message != "" {
		return status.Status().Message
	}
	return err.Error()
}
