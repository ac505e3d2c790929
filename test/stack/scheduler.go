package stack

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// schedule binds every pod that has no node to Node, through the binding
// subresource as kube-scheduler does: the stack has one node, so there is
// nothing to choose. It returns when ctx ends.
func schedule(ctx context.Context, kube kubernetes.Interface, log logr.Logger) {
	factory := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", "").String()
	}))
	pending := make(chan *corev1.Pod, 256)
	inf := factory.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if pod, ok := obj.(*corev1.Pod); ok && pod.DeletionTimestamp == nil {
				pending <- pod
			}
		},
	})
	factory.Start(ctx.Done())
	for {
		select {
		case <-ctx.Done():
			factory.Shutdown()
			return
		case pod := <-pending:
			binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
				Target: corev1.ObjectReference{Kind: "Node", Name: Node}}
			for attempt := 0; attempt < 5; attempt++ {
				err := kube.CoreV1().Pods(pod.Namespace).Bind(ctx, binding, metav1.CreateOptions{})
				if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) || ctx.Err() != nil {
					break
				}
				log.Error(err, "Failed to bind the pod; trying again", "pod", pod.Namespace+"/"+pod.Name)
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
}
