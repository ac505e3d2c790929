// Package stack starts and stops the local stack the demo and the
// end-to-end tests run on, every part real:
//
//   - etcd and kube-apiserver (test/testenv), with the Backstop and Gateway
//     API CRDs;
//   - kube-controller-manager, so Deployments make ReplicaSets and Pods and
//     Services get EndpointSlices;
//   - kwok, playing a node and the lifecycle of its pods, which get their
//     IPs from Network, and a scheduler binding every pod to that node;
//   - the pods themselves: each pod on the node runs as a process in a
//     network namespace holding the pod's IP (test/podnet), so EndpointSlices
//     hold real, reachable endpoints. Pods whose image is DemoImage run the
//     demo app (test/app) at the image's tag;
//   - traefik, serving the Gateway GatewayNamespace/GatewayName from the
//     Gateway API objects of the apiserver;
//   - Prometheus, scraping every pod each second;
//   - the Backstop manager, built from this repository.
//
// Everything runs as the current user's processes on this machine; the pod
// network is a bridge with a private /24 (Network) in namespaces the stack
// creates and removes. It needs root, for the namespaces.
package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"backstop.dev/backstop/test/podnet"
	"backstop.dev/backstop/test/proc"
	"backstop.dev/backstop/test/testenv"
)

// The stack's fixed names and addresses.
const (
	// Node is the kwok node every pod is scheduled on.
	Node = "demo-node"
	// DemoImage is the image name of the demo app: a pod running
	// DemoImage:v3 runs the demo app at version v3, with the container's
	// APP_* environment (see test/app).
	DemoImage = "backstop.dev/demo-app"
	// AppPort is the port the demo app listens on in its pod.
	AppPort = 8080
)

// Network is the pods' network: the bridge holds .1, kwok hands out the
// rest.
var Network = netip.MustParsePrefix("10.244.0.0/24")

// Options of a stack.
type Options struct {
	// Dir holds the logs and files of every part; a temporary folder if
	// empty, removed by Stop.
	Dir string
	// Log receives a line as each part comes up.
	Log func(format string, args ...any)
	// PodLog receives what happens to the pods.
	PodLog logr.Logger
	// GitOps adds a git server with the fleet repository, and Flux
	// (kustomize-controller, with test/fluxsource in place of
	// source-controller) applying from it.
	GitOps bool
	// APIServerArgs are more kube-apiserver flags, by name without dashes,
	// such as "audit-log-path".
	APIServerArgs map[string]string
	// ManagerArgs are more flags of the Backstop manager, such as
	// "--pprof-bind-address=127.0.0.1:6060".
	ManagerArgs []string
}

// Stack is a running stack.
type Stack struct {
	// Env is the control plane.
	Env *testenv.Env
	// Kube is a clientset for the control plane.
	Kube kubernetes.Interface
	// Dir holds every part's log.
	Dir string

	// Gateway is the address (127.0.0.1:port) of traefik's entry point,
	// which the Gateway GatewayNamespace/GatewayName listens on.
	Gateway string
	// Prometheus is the URL of the Prometheus that scrapes the pods.
	Prometheus string
	// Metrics is the address (127.0.0.1:port) of the Backstop manager's
	// metrics endpoint, served over plain HTTP at /metrics.
	Metrics string
	// Fleet is the git server and the working clone of the fleet
	// repository, with Options.GitOps.
	Fleet *Fleet

	opts       Options
	token      string
	removeDir  bool
	procs      []*proc.Process
	net        *podnet.Network
	stopSignal func()
	podsCtx    context.Context // ends when the stack stops
	waits      []chan error    // goroutines that end with podsCtx
	cancelPods context.CancelFunc
	podsDone   chan error
}

// Start brings the stack up, part by part; on an error it stops what it
// started.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	if err := podnet.Available(); err != nil {
		return nil, fmt.Errorf("the stack runs pods in network namespaces: %w", err)
	}
	if opts.Log == nil {
		opts.Log = func(string, ...any) {}
	}
	if err := buildTools(opts.Log); err != nil {
		return nil, err
	}
	s := &Stack{opts: opts, Dir: opts.Dir}
	if s.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "backstop-stack-"); err != nil {
			return nil, err
		}
		s.removeDir = true
	}
	defer func() {
		if err != nil {
			s.removeDir = false // keep the logs the error points at
			s.Stop()
		}
	}()
	type part struct {
		name string
		up   func(context.Context) error
	}
	parts := []part{
		{"the control plane", s.controlPlane},
		{"kube-controller-manager", s.controllerManager},
		{"the pod network", s.podNetwork},
		{"kwok and its node", s.kwok},
		{"traefik and the Gateway", s.traefik},
		{"Prometheus", s.prometheus},
	}
	if opts.GitOps {
		parts = append(parts, part{"the git server and Flux", s.gitops})
	}
	parts = append(parts, part{"the Backstop manager", s.manager})
	for _, part := range parts {
		started := time.Now()
		if err := part.up(ctx); err != nil {
			return nil, fmt.Errorf("starting %s: %w", part.name, err)
		}
		opts.Log("%s is up (%s)", part.name, time.Since(started).Round(100*time.Millisecond))
	}
	return s, nil
}

// Stop stops every part, the last started first, and removes the pod
// network. It is safe to call more than once.
func (s *Stack) Stop() {
	if s.cancelPods != nil {
		s.cancelPods()
		<-s.podsDone
		for _, w := range s.waits {
			<-w
		}
		s.cancelPods, s.waits = nil, nil
	}
	if s.Fleet != nil {
		s.Fleet.Server.Stop()
		s.Fleet = nil
	}
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].Stop()
	}
	s.procs = nil
	if s.net != nil {
		if err := s.net.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "stack: removing the pod network:", err)
		}
		s.net = nil
	}
	if s.stopSignal != nil {
		s.stopSignal()
		s.stopSignal = nil
	}
	if s.Env != nil {
		s.Env.Stop()
		s.Env = nil
	}
	if s.removeDir {
		os.RemoveAll(s.Dir)
	}
}

// tools are the binaries of the stack that the Makefile builds into bin/.
var tools = []string{"etcd", "kube-apiserver", "kubectl", "kube-controller-manager", "kwok", "traefik", "kustomize-controller"}

// buildTools runs `make stack-tools` when a binary is missing, as the
// first run on a machine does; it takes several minutes and says so.
func buildTools(log func(string, ...any)) error {
	var missing []string
	for _, t := range tools {
		if _, err := os.Stat(bin(t)); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	log("building %s into bin/ (first run only; several minutes)", strings.Join(missing, ", "))
	cmd := exec.Command("make", "--no-print-directory", "stack-tools")
	cmd.Dir = testenv.RepoRoot()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("make stack-tools: %w", err)
	}
	return nil
}

// bin is the path of a binary the Makefile builds into bin/.
func bin(name string) string { return filepath.Join(testenv.RepoRoot(), "bin", name) }

// controlPlane starts etcd and kube-apiserver, with a token for traefik,
// whose provider takes no kubeconfig.
func (s *Stack) controlPlane(context.Context) error {
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return err
	}
	s.token = hex.EncodeToString(token)
	tokens := filepath.Join(s.Dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(s.token+`,traefik,traefik,"system:masters"`+"\n"), 0o600); err != nil {
		return err
	}
	var crds []string
	if s.opts.GitOps {
		var err error
		if crds, err = testenv.FluxCRDs(); err != nil {
			return err
		}
	}
	args := map[string]string{"token-auth-file": tokens}
	maps.Copy(args, s.opts.APIServerArgs)
	env, err := testenv.StartWith(testenv.Options{APIServerArgs: args, CRDDirs: crds})
	if err != nil {
		return err
	}
	s.Env = env
	s.Kube, err = kubernetes.NewForConfig(env.Config)
	return err
}

// controllerManager starts the controllers a Deployment needs to become
// Pods, and a Service EndpointSlices.
func (s *Stack) controllerManager(ctx context.Context) error {
	p, err := proc.Start(s.Dir, "kube-controller-manager", bin("kube-controller-manager"), []string{
		"--kubeconfig=" + s.Env.Kubeconfig,
		"--controllers=deployment,replicaset,endpointslice,garbagecollector,namespace",
		"--leader-elect=false",
		"--secure-port=0",
		"--concurrent-deployment-syncs=5",
		"--concurrent-replicaset-syncs=5",
		"--endpointslice-updates-batch-period=0s",
		"--v=1",
	})
	if err != nil {
		return err
	}
	s.procs = append(s.procs, p)
	return p.Running()
}

// podNetwork makes the bridge and starts the runner that plays the
// kubelet for the node's pods.
func (s *Stack) podNetwork(context.Context) error {
	n := &podnet.Network{Prefix: Network, Name: "bstk"}
	s.stopSignal = podnet.CleanupOnSignal(n)
	if err := n.Up(); err != nil {
		return err
	}
	s.net = n
	app := filepath.Join(s.Dir, "demo-app")
	build := exec.Command("go", "build", "-o", app, "./test/app/cmd/demo-app")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the demo app: %v\n%s", err, out)
	}
	r := &podnet.Runner{Client: s.Kube, Node: Node, Network: n, Log: s.opts.PodLog, TerminationDelay: 2 * time.Second,
		Command: func(pod *corev1.Pod) (*exec.Cmd, error) { return podCommand(app, pod) }}
	ctx, cancel := context.WithCancel(context.Background())
	s.podsCtx, s.cancelPods, s.podsDone = ctx, cancel, make(chan error, 1)
	scheduled := make(chan struct{})
	go func() {
		defer close(scheduled)
		schedule(ctx, s.Kube, s.opts.PodLog)
	}()
	go func() {
		err := r.Run(ctx)
		<-scheduled
		s.podsDone <- err
	}()
	return nil
}

// podCommand is the process of a pod: the demo app for DemoImage, nothing
// for other images.
func podCommand(app string, pod *corev1.Pod) (*exec.Cmd, error) {
	if len(pod.Spec.Containers) == 0 {
		return nil, nil
	}
	c := pod.Spec.Containers[0]
	name, version, _ := strings.Cut(c.Image, ":")
	if name != DemoImage {
		return nil, nil
	}
	cmd := exec.Command(app, "--version="+version, fmt.Sprintf("--listen=%s:%d", pod.Status.PodIP, AppPort))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "APP_") {
			cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
		}
	}
	return cmd, nil
}

// kwokStageFiles are the stages kwok plays, from its module: a node that
// becomes Ready and renews its lease; pods that become Ready at once, and
// go when deleted.
var kwokStageFiles = []string{
	"node/fast/node-initialize.yaml",
	"node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
	"pod/fast/pod-ready.yaml",
	"pod/fast/pod-complete.yaml",
	"pod/fast/pod-delete.yaml",
}

// kwokStages writes kwok's configuration, the stages, into dir.
func kwokStages(dir string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kwok")
	cmd.Dir = filepath.Join(testenv.RepoRoot(), "hack", "tools", "kwok")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating the kwok module: %w", err)
	}
	stages := filepath.Join(strings.TrimSpace(string(out)), "kustomize", "stage")
	var config []byte
	for _, f := range kwokStageFiles {
		b, err := os.ReadFile(filepath.Join(stages, f))
		if err != nil {
			return "", err
		}
		config = append(append(config, "---\n"...), b...)
	}
	path := filepath.Join(dir, "kwok.yaml")
	return path, os.WriteFile(path, config, 0o644)
}

// kwok starts kwok for the node and creates the node. Pods get IPs from
// .2 on: kwok hands out the address after the CIDR's as written, and .1 is
// the bridge's.
func (s *Stack) kwok(ctx context.Context) error {
	config, err := kwokStages(s.Dir)
	if err != nil {
		return err
	}
	p, err := proc.Start(s.Dir, "kwok", bin("kwok"), []string{
		"--kubeconfig=" + s.Env.Kubeconfig,
		"--config=" + config,
		"--manage-single-node=" + Node,
		"--cidr=" + netip.PrefixFrom(Network.Addr().Next(), Network.Bits()).String(),
		"--node-ip=" + Network.Addr().Next().String(),
	})
	if err != nil {
		return err
	}
	s.procs = append(s.procs, p)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: Node,
		Labels:      map[string]string{"kubernetes.io/hostname": Node, "type": "kwok"},
		Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"}}}
	if _, err := s.Kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return proc.WaitFor(ctx, "node "+Node+" to be Ready", time.Minute, p, func() error {
		n, err := s.Kube.CoreV1().Nodes().Get(ctx, Node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return errors.New("not Ready yet")
	})
}

// Deployment is a Deployment of the demo app at version, whose pods carry
// the label app=name and listen on AppPort.
func Deployment(namespace, name, version string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Spec: appsv1.DeploymentSpec{
		Replicas: &replicas,
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: DemoImage + ":" + version,
				Ports: []corev1.ContainerPort{{ContainerPort: AppPort}}}}}},
	}}
}
