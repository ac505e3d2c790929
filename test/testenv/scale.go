package testenv

// Helpers for programs that drive the control plane at scale, such as the
// benchmarks under test/bench: a testing.TB for a program's main, so it can
// use the helpers written for tests, and stand-ins that follow a watch of
// every namespace instead of polling one, so thousands of objects cost one
// write each per change rather than a list every 50 milliseconds.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Program is a testing.TB for a program rather than a test. Run calls a
// function with it; Fatal, FailNow and Skip end that function, and the
// cleanups run, the last registered first, when it returns. As in a test,
// Fatal must be called from the goroutine Run calls the function on. Logs
// go to standard error.
type Program struct {
	// TB is nil: it is embedded only for the interface's unexported
	// method. Every exported method is Program's own.
	testing.TB

	name string

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	reason   string // the first failure's message
	skipped  bool
	tempRoot string
	tempSeq  int
	ctx      context.Context
	cancel   context.CancelFunc
}

var _ testing.TB = (*Program)(nil)

// NewProgram returns a Program called name (its Name, and the prefix of
// its temporary folders).
func NewProgram(name string) *Program {
	ctx, cancel := context.WithCancel(context.Background())
	return &Program{name: name, ctx: ctx, cancel: cancel}
}

// programExit is what Fatal and Skip panic with to end the function of Run.
type programExit struct{}

// Run calls f with p, then the cleanups, and returns an error when f
// failed (Fatal, Error) or panicked.
func (p *Program) Run(f func(*Program)) (err error) {
	defer func() {
		r := recover()
		p.runCleanups()
		switch {
		case r == nil:
		case r == (programExit{}):
		default:
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			err = fmt.Errorf("panic: %v\n%s", r, buf)
		}
		if err == nil && p.Failed() {
			p.mu.Lock()
			err = errors.New(p.reason)
			p.mu.Unlock()
		}
	}()
	f(p)
	return nil
}

func (p *Program) runCleanups() {
	p.cancel()
	for {
		p.mu.Lock()
		if len(p.cleanups) == 0 {
			root := p.tempRoot
			p.tempRoot = ""
			p.mu.Unlock()
			if root != "" {
				os.RemoveAll(root)
			}
			return
		}
		fn := p.cleanups[len(p.cleanups)-1]
		p.cleanups = p.cleanups[:len(p.cleanups)-1]
		p.mu.Unlock()
		fn()
	}
}

// Cleanup registers fn to run when Run's function returns.
func (p *Program) Cleanup(fn func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, fn)
}

// Log writes args to standard error.
func (p *Program) Log(args ...any) { fmt.Fprintln(os.Stderr, args...) }

// Logf writes a formatted line to standard error.
func (p *Program) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// Error logs args and marks the program failed.
func (p *Program) Error(args ...any) { p.fail(fmt.Sprintln(args...)) }

// Errorf logs a formatted line and marks the program failed.
func (p *Program) Errorf(format string, args ...any) { p.fail(fmt.Sprintf(format, args...)) }

// fail logs msg and marks the program failed, keeping the first message
// for Run's error.
func (p *Program) fail(msg string) {
	msg = strings.TrimSuffix(msg, "\n")
	p.Log(msg)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reason == "" {
		p.reason = msg
	}
	p.failed = true
}

// Fail marks the program failed and goes on.
func (p *Program) Fail() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reason == "" {
		p.reason = p.name + " failed"
	}
	p.failed = true
}

// Failed reports whether the program failed.
func (p *Program) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// FailNow marks the program failed and ends Run's function.
func (p *Program) FailNow() {
	p.Fail()
	panic(programExit{})
}

// Fatal logs args and ends Run's function as failed.
func (p *Program) Fatal(args ...any) { p.Error(args...); p.FailNow() }

// Fatalf logs a formatted line and ends Run's function as failed.
func (p *Program) Fatalf(format string, args ...any) { p.Errorf(format, args...); p.FailNow() }

// Helper does nothing: a program's log lines carry no file positions.
func (p *Program) Helper() {}

// Name is the name given to NewProgram.
func (p *Program) Name() string { return p.name }

// Setenv sets an environment variable until Run's function returns.
func (p *Program) Setenv(key, value string) {
	old, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		p.Fatalf("setting %s: %v", key, err)
	}
	p.Cleanup(func() {
		if had {
			os.Setenv(key, old)
		} else {
			os.Unsetenv(key)
		}
	})
}

// Chdir changes the working directory until Run's function returns.
func (p *Program) Chdir(dir string) {
	old, err := os.Getwd()
	if err != nil {
		p.Fatalf("chdir: %v", err)
	}
	if err := os.Chdir(dir); err != nil {
		p.Fatalf("chdir: %v", err)
	}
	p.Cleanup(func() { _ = os.Chdir(old) })
}

// Skip logs args and ends Run's function without failing.
func (p *Program) Skip(args ...any) { p.Log(args...); p.SkipNow() }

// Skipf logs a formatted line and ends Run's function without failing.
func (p *Program) Skipf(format string, args ...any) { p.Logf(format, args...); p.SkipNow() }

// SkipNow ends Run's function without failing.
func (p *Program) SkipNow() {
	p.mu.Lock()
	p.skipped = true
	p.mu.Unlock()
	panic(programExit{})
}

// Skipped reports whether Run's function was skipped.
func (p *Program) Skipped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.skipped
}

// TempDir returns a new folder, removed when Run's function returns.
func (p *Program) TempDir() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tempRoot == "" {
		root, err := os.MkdirTemp("", p.name+"-")
		if err != nil {
			panic(fmt.Sprintf("making a temporary folder: %v", err))
		}
		p.tempRoot = root
	}
	p.tempSeq++
	dir := fmt.Sprintf("%s/%03d", p.tempRoot, p.tempSeq)
	if err := os.Mkdir(dir, 0o755); err != nil {
		panic(fmt.Sprintf("making a temporary folder: %v", err))
	}
	return dir
}

// ArtifactDir returns a folder for files worth keeping; for a program it
// is a temporary folder like TempDir's.
func (p *Program) ArtifactDir() string { return p.TempDir() }

// Attr logs a key and value.
func (p *Program) Attr(key, value string) { p.Logf("%s: %s", key, value) }

// Context is cancelled just before the cleanups run.
func (p *Program) Context() context.Context { return p.ctx }

// Output is standard error.
func (p *Program) Output() io.Writer { return os.Stderr }

// watchWorkers is how many writes a watching stand-in makes at once.
const watchWorkers = 4

// RunGatewayWatch acts as RunGateway for the HTTPRoutes of every namespace,
// following a watch: each route whose status does not say what RunGateway
// would write gets one status write. It returns once the watch has synced
// and works in the background until ctx ends.
func (e *Env) RunGatewayWatch(ctx context.Context) error {
	return e.runWatch(ctx, &gwapiv1.HTTPRoute{}, func(ctx context.Context, c crcache.Cache, key types.NamespacedName) error {
		var r gwapiv1.HTTPRoute
		if err := c.Get(ctx, key, &r); err != nil {
			return client.IgnoreNotFound(err)
		}
		if !r.DeletionTimestamp.IsZero() || !setRouteStatus(&r, &r.Spec.CommonRouteSpec, &r.Status.RouteStatus) {
			return nil
		}
		return e.Client.Status().Update(ctx, &r)
	})
}

// RunDeploymentControllerWatch acts as RunDeploymentController for the
// Deployments of every namespace, following a watch, with the same status
// rules. It returns once the watch has synced and works in the background
// until ctx ends.
func (e *Env) RunDeploymentControllerWatch(ctx context.Context) error {
	return e.runWatch(ctx, &appsv1.Deployment{}, func(ctx context.Context, c crcache.Cache, key types.NamespacedName) error {
		var d appsv1.Deployment
		if err := c.Get(ctx, key, &d); err != nil {
			return client.IgnoreNotFound(err)
		}
		if !d.DeletionTimestamp.IsZero() {
			return nil
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		if d.Status.ObservedGeneration == d.Generation && d.Status.Replicas == want {
			return nil
		}
		setDeploymentStatus(&d, want, d.Spec.Template.Annotations[NeverReadyAnnotation] == "true")
		return e.Client.Status().Update(ctx, &d)
	})
}

// runWatch calls sync for every object of obj's kind that is added or
// changes, from watchWorkers goroutines; a failed sync (a conflict with a
// newer version) is tried again with backoff.
func (e *Env) runWatch(ctx context.Context, obj client.Object, sync func(context.Context, crcache.Cache, types.NamespacedName) error) error {
	c, err := crcache.New(e.Config, crcache.Options{Scheme: e.Scheme, DefaultTransform: crcache.TransformStripManagedFields()})
	if err != nil {
		return err
	}
	inf, err := c.GetInformer(ctx, obj, crcache.BlockUntilSynced(false))
	if err != nil {
		return err
	}
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](10*time.Millisecond, 5*time.Second))
	enqueue := func(o any) {
		if co, ok := o.(client.Object); ok {
			queue.Add(client.ObjectKeyFromObject(co))
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, o any) { enqueue(o) },
	}); err != nil {
		return err
	}
	go func() {
		_ = c.Start(ctx)
	}()
	if !c.WaitForCacheSync(ctx) {
		queue.ShutDown()
		return fmt.Errorf("watching %T: the cache did not sync", obj)
	}
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	for range watchWorkers {
		go func() {
			for {
				key, shutdown := queue.Get()
				if shutdown {
					return
				}
				if err := sync(ctx, c, key); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
					queue.AddRateLimited(key)
				} else {
					queue.Forget(key)
				}
				queue.Done(key)
			}
		}()
	}
	return nil
}
