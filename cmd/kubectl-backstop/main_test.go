package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/testenv"
)

// env is the control plane this package's tests run the plugin against.
var env *testenv.Env

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// t0 is the time the fixtures' status times are set relative to, and the
// clock of the status and history views.
var t0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

// result is what one run of the plugin did.
type result struct {
	code     int
	out, err string
}

// run runs the plugin as the cluster admin with the clock at now.
func run(t *testing.T, now time.Time, args ...string) result {
	t.Helper()
	return runWith(t, Options{Clock: clocktesting.NewFakePassiveClock(now)}, env.Kubeconfig, args...)
}

// runWith runs the plugin with o, reaching the cluster through kubeconfig.
func runWith(t *testing.T, o Options, kubeconfig string, args ...string) result {
	t.Helper()
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	o.Streams = streams
	code := Execute(context.Background(), o, append([]string{"--kubeconfig", kubeconfig}, args...))
	return result{code: code, out: out.String(), err: errOut.String()}
}

// golden compares got with testdata/name.golden, or rewrites the file
// with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s (run with -update to write it): %v", path, err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update to accept it)\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

// rollout is a valid Rollout of the Deployment name with two checks.
func rollout(ns, name string, strategy backstopv1.Strategy) *backstopv1.Rollout {
	return &backstopv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: backstopv1.RolloutSpec{
			TargetRef: backstopv1.TargetReference{Name: name},
			Service:   backstopv1.ServiceSpec{Port: 8080},
			Routes:    []backstopv1.Route{{Name: name, ParentRefs: []gwapiv1.ParentReference{{Name: "public"}}}},
			Strategy:  strategy,
			Analysis: &backstopv1.AnalysisSpec{Checks: []backstopv1.Check{
				{Name: "error-rate", FailureLimit: 1, CheckSpec: backstopv1.CheckSpec{Query: "errors", Max: ptr.To(backstopv1.Decimal("0.01"))}},
				{Name: "latency-p99", FailureLimit: 2, CheckSpec: backstopv1.CheckSpec{Query: "latency", Max: ptr.To(backstopv1.Decimal("0.3"))}},
			}},
		},
	}
}

// canarySteps is an explicit canary plan of seven steps.
func canarySteps() backstopv1.Strategy {
	return backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](5)},
		{Analysis: &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: 5 * time.Minute}, Checks: []string{"error-rate"}}},
		{SetWeight: ptr.To[int32](20)},
		{Analysis: &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: 10 * time.Minute}}},
		{Pause: &backstopv1.PauseStep{}},
		{SetWeight: ptr.To[int32](50)},
		{Analysis: &backstopv1.AnalysisStep{Window: metav1.Duration{Duration: 10 * time.Minute}}},
	}}}
}

// shortForm is a canary plan in the short form: weights step by step up to
// max, each with an analysis of interval.
func shortForm(step, max int32, interval time.Duration) backstopv1.Strategy {
	c := &backstopv1.CanaryStrategy{StepWeight: ptr.To(step), Interval: &metav1.Duration{Duration: interval}}
	if max > 0 {
		c.MaxWeight = ptr.To(max)
	}
	return backstopv1.Strategy{Canary: c}
}

// create creates ro and, when st is not nil, sets its status through the
// status subresource. It returns the Rollout as the server has it.
func create(t *testing.T, ro *backstopv1.Rollout, st *backstopv1.RolloutStatus) *backstopv1.Rollout {
	t.Helper()
	ctx := context.Background()
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatalf("creating rollout %s/%s: %v", ro.Namespace, ro.Name, err)
	}
	if st != nil {
		setStatus(t, ro, *st)
	}
	return ro
}

// setStatus writes st as ro's status.
func setStatus(t *testing.T, ro *backstopv1.Rollout, st backstopv1.RolloutStatus) {
	t.Helper()
	ro.Status = st
	if err := env.Client.Status().Update(context.Background(), ro); err != nil {
		t.Fatalf("setting the status of rollout %s/%s: %v", ro.Namespace, ro.Name, err)
	}
}

// fetch reads ro from the server.
func fetch(t *testing.T, ns, name string) *backstopv1.Rollout {
	t.Helper()
	ro := &backstopv1.Rollout{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ro); err != nil {
		t.Fatalf("reading rollout %s/%s: %v", ns, name, err)
	}
	return ro
}

// recordEvent creates an events.k8s.io Event regarding ro, as Backstop's
// recorder writes them. count above 1 makes it a series.
func recordEvent(t *testing.T, ro *backstopv1.Rollout, name, typ, reason, note string, at time.Time, count int32) {
	t.Helper()
	e := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: ro.Namespace, Name: ro.Name + "." + name},
		EventTime:           metav1.NewMicroTime(at),
		ReportingController: "backstop",
		ReportingInstance:   "backstop-7d4b9c-x2x9k",
		Action:              "Release",
		Reason:              reason,
		Note:                note,
		Type:                typ,
		Regarding: corev1.ObjectReference{
			APIVersion: backstopv1.GroupVersion.String(), Kind: backstopv1.RolloutKind,
			Namespace: ro.Namespace, Name: ro.Name, UID: ro.UID,
		},
	}
	if count > 1 {
		e.EventTime = metav1.NewMicroTime(at.Add(-time.Duration(count) * time.Minute))
		e.Series = &eventsv1.EventSeries{Count: count, LastObservedTime: metav1.NewMicroTime(at)}
	}
	if err := env.Client.Create(context.Background(), e); err != nil {
		t.Fatalf("creating event %s: %v", e.Name, err)
	}
}

// namespace creates a namespace of a fixed name, for output that names it.
func namespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

// syncBuffer is a buffer that a running command writes while a test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// before is the time d before t0.
func before(d time.Duration) *metav1.Time { return ptr.To(metav1.NewTime(t0.Add(-d))) }
