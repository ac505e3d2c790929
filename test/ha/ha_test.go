// Package ha_test proves the ways to run more than one manager, with the
// real manager binary against a real API server: two replicas with leader
// election, where the standby takes over a release when the leader is
// killed, and shards, where each manager owns the Rollouts labelled with
// its shard and a Rollout moved between shards is handed over mid-release.
// Both keep the promise of a single manager: every route weight of a
// release is written once.
package ha_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	// The managers under test log to their own files; the test's clients
	// log nothing.
	ctrllog.SetLogger(logr.Discard())
	testenv.Main(m, &env)
}

// Leader election timings of the tests' managers: short, so a takeover
// takes seconds, with room for a loaded machine to renew in time (each
// renewal request may take up to half the renew deadline, and there are
// several tries before it).
const (
	leaseDuration = 8 * time.Second
	renewDeadline = 6 * time.Second
	retryPeriod   = time.Second
)

// releaseTimeout bounds a release of the tests, takeover or handover
// included.
const releaseTimeout = 90 * time.Second

// pause is each pause step of the tests' releases: long enough to kill a
// manager or move a Rollout in it.
const pause = 3 * time.Second

// electionArgs are the manager flags for leader election with a Lease in
// namespace ns.
func electionArgs(ns string) []string {
	return []string{
		"--leader-elect=true",
		"--leader-election-namespace=" + ns,
		"--leader-election-lease-duration=" + leaseDuration.String(),
		"--leader-election-renew-deadline=" + renewDeadline.String(),
		"--leader-election-retry-period=" + retryPeriod.String(),
	}
}

// app is a Deployment and its Rollout: a canary release in three weights,
// each followed by a pause.
type app struct {
	ns, name string
	key      client.ObjectKey
}

// newApp creates the Deployment name (app:v1) and its Rollout, with the
// Rollout's labels and changed by opts, in ns, whose Gateway "public" the
// caller made.
func newApp(t *testing.T, ns, name string, labels map[string]string, opts ...func(*backstopv1.Rollout)) *app {
	t.Helper()
	selector := map[string]string{"app": name}
	mustCreate(t, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: selector},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:v1"}}},
			},
		},
	})
	paused := backstopv1.CanaryStep{Pause: &backstopv1.PauseStep{Duration: &metav1.Duration{Duration: pause}}}
	ro := &backstopv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: backstopv1.RolloutSpec{
			TargetRef: backstopv1.TargetReference{Name: name},
			Service:   backstopv1.ServiceSpec{Port: 8080},
			Routes:    []backstopv1.Route{{Name: name, ParentRefs: []gwapiv1.ParentReference{{Name: "public"}}}},
			Strategy: backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
				{SetWeight: ptr.To[int32](20)}, paused,
				{SetWeight: ptr.To[int32](40)}, paused,
				{SetWeight: ptr.To[int32](60)}, paused,
			}}},
		},
	}
	for _, opt := range opts {
		opt(ro)
	}
	mustCreate(t, ro)
	return &app{ns: ns, name: name, key: client.ObjectKey{Namespace: ns, Name: name}}
}

// wantWrites is the route's every spec in a release of the app, each
// written once: stable, the three canary weights, and stable again after
// the promotion.
func (a *app) wantWrites() []string {
	var out []string
	for _, canary := range []int{0, 20, 40, 60, 0} {
		out = append(out, fmt.Sprintf("%s-primary=%d,%s-canary=%d", a.name, 100-canary, a.name, canary))
	}
	return out
}

// release changes the Deployment's image to app:v2, which starts a release.
func (a *app) release(t *testing.T) {
	t.Helper()
	var d appsv1.Deployment
	if err := env.Client.Get(context.Background(), a.key, &d); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Template.Spec.Containers[0].Image = "app:v2"
	if err := env.Client.Patch(context.Background(), &d, patch); err != nil {
		t.Fatal(err)
	}
}

// status reads the Rollout's status from the API server.
func (a *app) status(t *testing.T) backstopv1.RolloutStatus {
	t.Helper()
	var ro backstopv1.Rollout
	if err := env.Client.Get(context.Background(), a.key, &ro); err != nil {
		t.Fatal(err)
	}
	return ro.Status
}

// waitPhase waits until the Rollout is in phase, for up to timeout.
func (a *app) waitPhase(t *testing.T, phase backstopv1.RolloutPhase, timeout time.Duration) {
	t.Helper()
	waitFor(t, fmt.Sprintf("Rollout %s to be %s", a.name, phase), timeout, func() bool { return a.status(t).Phase == phase })
}

// waitPause waits until the release is in the pause after the canary
// weight (20, 40 or 60), its route written and recorded: a moment at which
// no step is due for a while.
func (a *app) waitPause(t *testing.T, weight int32) {
	t.Helper()
	step := weight/10 - 1 // the steps are 20, pause, 40, pause, 60, pause
	waitFor(t, fmt.Sprintf("Rollout %s in the pause at canary weight %d", a.name, weight), releaseTimeout, func() bool {
		st := a.status(t)
		return st.Phase == backstopv1.PhaseProgressing && st.CanaryWeight == weight && st.CurrentStep == step
	})
}

// setLabel sets (or, with value "", removes) a label of the Rollout.
func (a *app) setLabel(t *testing.T, key, value string) {
	t.Helper()
	var ro backstopv1.Rollout
	if err := env.Client.Get(context.Background(), a.key, &ro); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(ro.DeepCopy())
	if value == "" {
		delete(ro.Labels, key)
	} else {
		if ro.Labels == nil {
			ro.Labels = map[string]string{}
		}
		ro.Labels[key] = value
	}
	if err := env.Client.Patch(context.Background(), &ro, patch); err != nil {
		t.Fatal(err)
	}
}

// checkWrites fails unless the route went through exactly the app's
// wanted specs, and logs how many it counted.
func (a *app) checkWrites(t *testing.T, writes *testenv.RouteWrites) {
	t.Helper()
	want := a.wantWrites()
	// The watch may deliver the last write after the status says
	// Succeeded.
	deadline := time.Now().Add(5 * time.Second)
	for len(writes.States()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(testenv.Poll)
	}
	got := writes.States()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("route %s writes\n  %s\nwant exactly\n  %s", a.name, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		return
	}
	t.Logf("route %s: %d writes, each weight once: %s", a.name, len(got), strings.Join(got, " → "))
}

// newGateway creates the Gateway "public" the apps' routes attach to.
func newGateway(t *testing.T, ns string) {
	t.Helper()
	mustCreate(t, &gwapiv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "public", Namespace: ns},
		Spec: gwapiv1.GatewaySpec{GatewayClassName: "test",
			Listeners: []gwapiv1.Listener{{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType}}},
	})
}

// lease reads a Lease; its zero value when there is none.
func lease(t *testing.T, ns, name string) coordinationv1.Lease {
	t.Helper()
	var l coordinationv1.Lease
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &l); client.IgnoreNotFound(err) != nil {
		t.Fatal(err)
	}
	return l
}

// leads says the manager holds the Lease named lease.
func (m metrics) leads(lease string) bool {
	v, _ := m.value("leader_election_master_status", map[string]string{"name": lease})
	return v == 1
}

// metrics are the metric families of one scrape of a manager, by name.
type metrics map[string]*dto.MetricFamily

// scrape reads a manager's /metrics.
func scrape(t *testing.T, m *testenv.Manager) metrics {
	t.Helper()
	resp, err := http.Get("http://" + m.Metrics + "/metrics") //nolint:gosec // the test's loopback address
	if err != nil {
		t.Fatalf("scraping %s: %v", m.Metrics, err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the metrics of %s: %v", m.Metrics, err)
	}
	return families
}

// value is the sum of the counter or gauge samples of name whose labels
// include labels, and whether there was any.
func (m metrics) value(name string, labels map[string]string) (float64, bool) {
	sum, found := 0.0, false
	for _, s := range m[name].GetMetric() {
		if !hasLabels(s, labels) {
			continue
		}
		sum += s.GetCounter().GetValue() + s.GetGauge().GetValue()
		found = true
	}
	return sum, found
}

func hasLabels(s *dto.Metric, labels map[string]string) bool {
	matched := 0
	for _, l := range s.GetLabel() {
		if v, ok := labels[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			matched++
		}
	}
	return matched == len(labels)
}

// writes counts the manager's requests that changed something on the API
// server: those with a writing method that succeeded.
func (m metrics) writes() float64 {
	n := 0.0
	for _, s := range m["rest_client_requests_total"].GetMetric() {
		var method, code string
		for _, l := range s.GetLabel() {
			switch l.GetName() {
			case "method":
				method = l.GetValue()
			case "code":
				code = l.GetValue()
			}
		}
		if method != http.MethodGet && strings.HasPrefix(code, "2") {
			n += s.GetCounter().GetValue()
		}
	}
	return n
}

// phaseOf is the phase a manager's backstop_rollout_phase reports for a
// Rollout; "" when it has no series of it.
func (m metrics) phaseOf(ns, name string) string {
	for _, s := range m["backstop_rollout_phase"].GetMetric() {
		if hasLabels(s, map[string]string{"namespace": ns, "rollout": name}) && s.GetGauge().GetValue() == 1 {
			for _, l := range s.GetLabel() {
				if l.GetName() == "phase" {
					return l.GetValue()
				}
			}
		}
	}
	return ""
}

// waitFor polls ok every testenv.Poll until it holds, and fails the test
// when it does not within timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %s", what, timeout)
		}
		time.Sleep(testenv.Poll)
	}
}

func mustCreate(t *testing.T, obj client.Object) {
	t.Helper()
	if err := env.Client.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}
