package controllers_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"backstop.dev/backstop/analysis"
	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers"
	"backstop.dev/backstop/test/testenv"
)

// env is the control plane shared by this package's tests; the manager
// running the Rollout reconciler is started against it once.
var env *testenv.Env

func TestMain(m *testing.M) {
	// A fuzz worker runs only the fuzz target, which needs no apiserver;
	// starting one per worker would also keep the run from ending.
	for _, arg := range os.Args[1:] {
		if strings.HasPrefix(arg, "-test.fuzzworker") {
			os.Exit(m.Run())
		}
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	env, err = testenv.StartWith(testenv.Options{CRDDirs: []string{filepath.Join(testenv.RepoRoot(), "test", "testenv", "testdata", "keda-crds.yaml")}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer env.Stop()

	// The manager's logs are noise unless a test fails in a way they explain;
	// BACKSTOP_TEST_LOGS=1 shows them. They are always kept in managerLog,
	// for the tests that check what the manager does not log.
	var logs io.Writer = managerLog
	if os.Getenv("BACKSTOP_TEST_LOGS") != "" {
		logs = io.MultiWriter(os.Stderr, managerLog)
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true)))
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating the manager:", err)
		return 1
	}
	notifier, err := startNotifier(mgr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "adding the notifier:", err)
		return 1
	}
	r := &controllers.RolloutReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder(controllers.ControllerName),
		Analyzer:  verdicts,
		Reverter:  reverts,
		Notifier:  notifier,
		// A failed revert is tried again soon, for TestFailedRevertIsTriedAgain.
		RevertRetry: 2 * time.Second,
		// Tracked Secrets are looked at often, for TestConfigSecret*.
		SecretPoll: time.Second,
	}
	if err := r.SetupWithManager(mgr, 2); err != nil {
		fmt.Fprintln(os.Stderr, "setting up the reconciler:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		return 1
	}
	return code
}

// verdicts is the analysis the tests script: SLO analysis is its own
// package, tested against a real Prometheus; here each test says what its
// Rollout's checks conclude. Rollouts no test scripted pass.
var verdicts = &scriptedAnalyzer{byRollout: map[types.NamespacedName]analysis.Outcome{}}

type scriptedAnalyzer struct {
	mu        sync.Mutex
	byRollout map[types.NamespacedName]analysis.Outcome
	// real holds the Rollouts judged by the real analysis.
	real map[types.NamespacedName]*analysis.Analyzer
}

func (a *scriptedAnalyzer) Analyze(ctx context.Context, ro *backstopv1.Rollout, now time.Time) (analysis.Outcome, error) {
	a.mu.Lock()
	real, isReal := a.real[client.ObjectKeyFromObject(ro)]
	v, scripted := a.byRollout[client.ObjectKeyFromObject(ro)]
	a.mu.Unlock()
	switch {
	case isReal:
		return real.Analyze(ctx, ro, now)
	case scripted:
		return v, nil
	}
	return analysis.Outcome{Result: backstopv1.VerdictPass}, nil
}

// judgeForReal has ro judged by a real analysis.Analyzer.
func (a *scriptedAnalyzer) judgeForReal(ro *backstopv1.Rollout, an *analysis.Analyzer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.real == nil {
		a.real = map[types.NamespacedName]*analysis.Analyzer{}
	}
	a.real[client.ObjectKeyFromObject(ro)] = an
}

func (a *scriptedAnalyzer) set(ro *backstopv1.Rollout, v analysis.Outcome) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.byRollout[client.ObjectKeyFromObject(ro)] = v
}

// reverts reverts in Git for the Rollouts a test registers, and records
// the revert as skipped for the others, as a manager without Git would.
var reverts = &scriptedReverter{real: map[types.NamespacedName]controllers.Reverter{}}

type scriptedReverter struct {
	mu   sync.Mutex
	real map[types.NamespacedName]controllers.Reverter
}

func (s *scriptedReverter) Revert(ctx context.Context, ro *backstopv1.Rollout) error {
	s.mu.Lock()
	real, ok := s.real[client.ObjectKeyFromObject(ro)]
	s.mu.Unlock()
	if ok {
		return real.Revert(ctx, ro)
	}
	return controllers.NoRevert{}.Revert(ctx, ro)
}

func (s *scriptedReverter) revertForReal(ro *backstopv1.Rollout, r controllers.Reverter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.real[client.ObjectKeyFromObject(ro)] = r
}

// managerLog keeps what the manager logs while the tests run, up to
// maxManagerLog bytes: the oldest half goes when it is full.
var managerLog = &logBuffer{}

const maxManagerLog = 64 << 20

// logBuffer is an in-memory log safe for concurrent writes and reads.
type logBuffer struct {
	mu      sync.Mutex
	buf     []byte
	dropped int // bytes dropped from the start
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf)+len(p) > maxManagerLog {
		half := len(b.buf) / 2
		b.buf, b.dropped = append([]byte(nil), b.buf[half:]...), b.dropped+half
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// Mark is the position of the end of the log, for Since.
func (b *logBuffer) Mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped + len(b.buf)
}

// Since returns what was logged after mark (what is kept of it).
func (b *logBuffer) Since(mark int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf[max(mark-b.dropped, 0):])
}
