package podnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Restart backoff of a pod's process: it doubles from the first to the
// longest delay, and starts again from the first after a process has run for
// backoffReset.
const (
	backoffFirst = time.Second
	backoffMax   = 30 * time.Second
	backoffReset = 30 * time.Second
)

// Runner plays the kubelet for the pods bound to one node: it runs a process
// in a sandbox holding the IP of each pod the API server says is there.
//
// A pod gets a sandbox once it has a status.podIP inside the network's
// prefix and is neither terminating, finished (Succeeded or Failed) nor on
// the host network. The sandbox of a pod is "<name>-<n>", n being the pod
// IP's position in the prefix (7 for 10.244.0.7 in 10.244.0.0/24), so a pod
// that gets the IP of another replaces that pod's sandbox.
//
// The process restarts with a backoff of 1s doubling to 30s when it exits.
// The sandbox is closed when the pod is deleted, gets a deletionTimestamp or
// finishes, and every sandbox is closed when Run returns. Callers still defer
// Network.Down, or use CleanupOnSignal, for when the program dies instead.
type Runner struct {
	// Client reads the pods.
	Client kubernetes.Interface
	// Node is the node whose pods run here (spec.nodeName).
	Node string
	// Network holds the sandboxes; it must be up.
	Network *Network
	// Command returns the process of a pod, called each time it starts. A nil
	// command leaves the pod without a sandbox.
	Command func(pod *corev1.Pod) (*exec.Cmd, error)
	// Log receives what happens to the pods; the zero Logger discards it.
	Log logr.Logger
	// TerminationDelay keeps the process of a pod that was deleted or is
	// terminating running this long before it is stopped, as a preStop
	// hook would: the endpoint leaves the proxies' lists before the process
	// stops listening. 0 stops it at once.
	TerminationDelay time.Duration

	draining sync.WaitGroup // delayed teardowns

	store cache.Store
	queue workqueue.TypedRateLimitingInterface[string]
	pods  map[string]*podSandbox // by namespace/name
	// ignored holds the UID of pods whose Command was nil, by namespace/name.
	ignored map[string]types.UID
}

// podSandbox is the sandbox of one pod and the goroutine that keeps its
// process running.
type podSandbox struct {
	uid     types.UID
	ip      netip.Addr
	sandbox *Sandbox
	cancel  context.CancelFunc
	done    chan struct{}
}

// Run watches the pods of the node and runs them until ctx is done, then
// closes every sandbox. It returns an error only when it cannot start. A
// Runner runs once.
func (r *Runner) Run(ctx context.Context) error {
	if r.Client == nil || r.Node == "" || r.Network == nil || r.Command == nil {
		return errors.New("podnet: a Runner needs a Client, a Node, a Network and a Command")
	}
	if err := r.Network.validate(); err != nil {
		return err
	}
	r.pods = map[string]*podSandbox{}
	r.ignored = map[string]types.UID{}
	r.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			r.queue.Add(key)
		}
	}
	var informer cache.Controller
	r.store, informer = cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: cache.NewListWatchFromClient(r.Client.CoreV1().RESTClient(), "pods", metav1.NamespaceAll,
			fields.OneTermEqualSelector("spec.nodeName", r.Node)),
		ObjectType: &corev1.Pod{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    enqueue,
			UpdateFunc: func(_, obj any) { enqueue(obj) },
			DeleteFunc: enqueue,
		},
	})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { informer.RunWithContext(ctx) })
	wg.Go(func() {
		<-ctx.Done()
		r.queue.ShutDown()
	})
	if cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		r.Log.Info("Started running pods", "node", r.Node, "network", r.Network.Name, "prefix", r.Network.Prefix)
		for r.next(ctx) {
		}
	}
	cancel()
	wg.Wait()
	r.closeAll()
	return nil
}

// next handles one pod from the queue, and says whether to go on.
func (r *Runner) next(ctx context.Context) bool {
	key, shutdown := r.queue.Get()
	if shutdown {
		return false
	}
	defer r.queue.Done(key)
	if ctx.Err() != nil {
		return false
	}
	if err := r.sync(ctx, key); err != nil {
		r.Log.Error(err, "Failed to run pod; retrying", "pod", key)
		r.queue.AddRateLimited(key)
		return true
	}
	r.queue.Forget(key)
	return true
}

// sync brings the sandbox of the pod named key in line with the pod.
func (r *Runner) sync(ctx context.Context, key string) error {
	var pod *corev1.Pod
	if obj, exists, err := r.store.GetByKey(key); err != nil {
		return err
	} else if exists {
		pod = obj.(*corev1.Pod)
	}
	ip, why, unusable := r.wanted(pod)
	if cur := r.pods[key]; cur != nil {
		switch {
		case pod == nil:
			r.drain(key, "pod deleted")
		case pod.UID != cur.uid:
			r.teardown(key, "pod replaced")
		case why != "":
			r.drain(key, why)
		case ip != cur.ip:
			r.teardown(key, "pod IP changed")
		default:
			return nil
		}
	}
	if pod == nil {
		delete(r.ignored, key)
	}
	if unusable {
		r.Log.Info("Skipped pod with an IP that cannot be sandboxed", "pod", key, "reason", why)
	}
	if why != "" || r.ignored[key] == pod.UID {
		return nil
	}
	delete(r.ignored, key)
	cmd, err := r.Command(pod)
	if err != nil {
		return fmt.Errorf("building the command: %w", err)
	}
	if cmd == nil {
		r.ignored[key] = pod.UID
		return nil
	}
	for other, o := range r.pods {
		if o.ip == ip {
			r.teardown(other, "pod IP reused by "+key)
		}
	}
	sb, err := r.Network.Attach(ip, strconv.FormatUint(uint64(r.Network.offset(ip)), 10))
	if err != nil {
		return err
	}
	pctx, cancel := context.WithCancel(ctx)
	ps := &podSandbox{uid: pod.UID, ip: ip, sandbox: sb, cancel: cancel, done: make(chan struct{})}
	r.pods[key] = ps
	r.Log.Info("Attached pod", "pod", key, "ip", ip, "netns", sb.Name)
	go func() {
		defer close(ps.done)
		r.supervise(pctx, key, pod, sb, cmd)
	}()
	return nil
}

// wanted returns the IP of a pod that should run here, or why it should
// not and whether that is because its IP cannot be sandboxed.
func (r *Runner) wanted(pod *corev1.Pod) (ip netip.Addr, why string, unusable bool) {
	switch {
	case pod == nil:
		return ip, "pod deleted", false
	case pod.DeletionTimestamp != nil:
		return ip, "pod terminating", false
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return ip, "pod finished", false
	case pod.Spec.HostNetwork:
		return ip, "pod on the host network", false
	case pod.Status.PodIP == "":
		return ip, "pod has no IP", false
	}
	ip, err := netip.ParseAddr(pod.Status.PodIP)
	if err == nil {
		err = r.Network.checkPodIP(ip)
	}
	if err != nil {
		return netip.Addr{}, strings.TrimPrefix(err.Error(), "podnet: "), true
	}
	return ip, "", false
}

// supervise runs the pod's process until ctx is done, restarting it with a
// backoff when it exits.
func (r *Runner) supervise(ctx context.Context, key string, pod *corev1.Pod, sb *Sandbox, cmd *exec.Cmd) {
	log := r.Log.WithValues("pod", key, "ip", sb.IP)
	backoff := backoffFirst
	for {
		if cmd != nil {
			started := time.Now()
			p, err := sb.Start(ctx, cmd)
			if err != nil {
				log.Error(err, "Failed to start pod process")
			} else {
				log.Info("Started pod process", "pid", p.Pid())
				<-p.Done()
				if ctx.Err() != nil {
					return
				}
				log.Info("Pod process exited; restarting", "status", fmt.Sprint(p.Err()), "ran", time.Since(started).Round(time.Millisecond), "backoff", backoff)
				if time.Since(started) > backoffReset {
					backoff = backoffFirst
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, backoffMax)
		var err error
		if cmd, err = r.Command(pod); err != nil {
			log.Error(err, "Failed to build pod process")
			cmd = nil
		}
	}
}

// drain tears the pod named key down after TerminationDelay, in the
// background; the sandbox leaves r.pods at once.
func (r *Runner) drain(key, why string) {
	ps := r.pods[key]
	if ps == nil || r.TerminationDelay <= 0 {
		r.teardown(key, why)
		return
	}
	delete(r.pods, key)
	r.draining.Go(func() {
		time.Sleep(r.TerminationDelay)
		ps.cancel()
		<-ps.done
		if err := ps.sandbox.Close(); err != nil {
			r.Log.Error(err, "Failed to remove pod sandbox", "pod", key, "netns", ps.sandbox.Name)
			return
		}
		r.Log.Info("Removed pod sandbox", "pod", key, "netns", ps.sandbox.Name, "reason", why, "after", r.TerminationDelay)
	})
}

// teardown stops the process of the pod named key and closes its sandbox.
func (r *Runner) teardown(key, why string) {
	ps := r.pods[key]
	if ps == nil {
		return
	}
	delete(r.pods, key)
	start := time.Now()
	ps.cancel()
	<-ps.done
	if err := ps.sandbox.Close(); err != nil {
		r.Log.Error(err, "Failed to remove pod sandbox", "pod", key, "netns", ps.sandbox.Name)
		return
	}
	r.Log.Info("Removed pod sandbox", "pod", key, "netns", ps.sandbox.Name, "reason", why, "took", time.Since(start).Round(time.Millisecond))
}

// closeAll tears every sandbox down, in parallel.
func (r *Runner) closeAll() {
	var wg sync.WaitGroup
	for key, ps := range r.pods {
		wg.Go(func() {
			ps.cancel()
			<-ps.done
			if err := ps.sandbox.Close(); err != nil {
				r.Log.Error(err, "Failed to remove pod sandbox", "pod", key, "netns", ps.sandbox.Name)
			}
		})
	}
	wg.Wait()
	r.draining.Wait()
	clear(r.pods)
	r.Log.Info("Stopped running pods", "node", r.Node)
}
