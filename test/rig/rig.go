// Package rig assembles the real parts that many releases need when no
// request has to flow: the manager binary (test/testenv) against a real
// kube-apiserver, a real Prometheus that scrapes a target on which the test
// sets each canary's error ratio, and a real git server holding every app's
// manifest, which the manager reverts into. The Deployment controller and
// the gateway are testenv's stand-ins.
//
// The reliability tests (the chaos test, dependency failures, push races)
// share it: each creates a Rig, plays releases, and checks what the rig
// recorded (route writes, promotions, revert commits).
//
//	r := rig.New(t, env, rig.Options{Apps: 3})
//	r.StartManager(t)
//	rel, err := r.Release(ctx, "app-00", "v2", rig.Faulty)
//	err = r.WaitForEnd(ctx, rel)
//
// # Apps
//
// App "app-NN" is a Deployment of the image "app-NN:VERSION" (v1 at first),
// its manifest at apps/app-NN/deployment.yaml in the repository "fleet" on
// branch main, and a Rollout: a canary through a generated HTTPRoute, 20%,
// a 6 s pause, 60%, a 2 s pause, judged every second by one check, the
// error ratio the test set for the canary, at most 0.5. A rollback is
// reverted in the repository, found by the image line the release added
// (the rig records no source revisions, as when CI applies the manifests).
//
// Every credential the rig hands the manager (the git password, a
// Prometheus token and a notification webhook's URL) is a known value, so a
// test can show that none of them shows anywhere (Secrets).
package rig

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/gittest"
	"backstop.dev/backstop/test/promtest"
	"backstop.dev/backstop/test/testenv"
)

// The repository and the credentials of the git server.
const (
	Repo        = "fleet"
	Branch      = "main"
	GitUser     = "fleet-bot"
	GitPassword = "rig-git-pw-5d81e0c3f2"

	// PrometheusToken is sent by the checks as a bearer token (Prometheus
	// ignores it; it shows that the analyzer keeps it to itself).
	PrometheusToken = "rig-prom-token-a94c1b77e0"
	// WebhookToken is the secret part of the notification webhook's URL.
	WebhookToken = "rig-hook-token-3e6f2d9b41"
)

// Faulty and Healthy say what a release's canary reports.
const (
	Faulty  = true
	Healthy = false
)

// Secrets are the credential values the rig gives the manager.
var Secrets = []string{GitPassword, PrometheusToken, WebhookToken}

// Options shape a Rig.
type Options struct {
	// Apps is how many apps the rig creates, app-00 and on.
	Apps int
	// Rollout, when set, changes each app's Rollout before it is created.
	Rollout func(*backstopv1.Rollout)
	// ManagerArgs are added to the manager's flags.
	ManagerArgs []string
}

// Rig is the running parts and the apps.
type Rig struct {
	Env       *testenv.Env
	Namespace string
	// Dir holds the manager's log (backstop.log) and its clone cache.
	Dir        string
	Prometheus *promtest.Server
	Git        *gittest.Server
	// Manager is the running manager, nil before StartManager.
	Manager *testenv.Manager
	// Apps are the apps' names.
	Apps []string

	opts       Options
	errorRatio *prometheus.GaugeVec
	prom       promv1.API

	gitMu sync.Mutex // the working clone
	work  *gittest.Work

	routes     map[string]*testenv.RouteWrites
	promotions *deploymentImages

	notifyMu sync.Mutex
	notified int
}

// New starts Prometheus and the git server, creates the apps in a new
// namespace with their stand-ins, and waits until Prometheus has scraped
// every app's error ratio (0). It does not start the manager.
func New(t testing.TB, env *testenv.Env, opts Options) *Rig {
	t.Helper()
	r := &Rig{Env: env, Namespace: env.Namespace(t), Dir: t.TempDir(), opts: opts,
		routes: map[string]*testenv.RouteWrites{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	env.RunDeploymentController(ctx, r.Namespace)
	env.RunGateway(ctx, r.Namespace)

	tg := promtest.NewTarget(t)
	r.errorRatio = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rig_error_ratio", Help: "The share of failed requests the test says a Deployment's pods answer.",
	}, []string{"namespace", "deployment"})
	tg.Registry.MustRegister(r.errorRatio)
	r.Prometheus = promtest.Start(t, promtest.Config{Targets: []string{tg.Addr()}})
	pc, err := api.NewClient(api.Config{Address: r.Prometheus.URL()})
	if err != nil {
		t.Fatal(err)
	}
	r.prom = promv1.NewAPI(pc)

	r.Git = gittest.NewServer(t, gittest.Options{Username: GitUser, Password: GitPassword})
	r.Git.CreateRepo(t, Repo, Branch)
	r.work = r.Git.Clone(t, Repo)
	for i := range opts.Apps {
		app := fmt.Sprintf("app-%02d", i)
		r.Apps = append(r.Apps, app)
		r.work.Write(t, manifestPath(app), Manifest(app, Image(app, "v1")))
		r.errorRatio.WithLabelValues(r.Namespace, app).Set(0)
	}
	r.work.Write(t, "README.md", "The fleet: one folder per app.\n")
	r.work.Commit(t, "Deploy the apps at v1")
	r.work.Push(t)

	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Query().Get("token") != WebhookToken {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		r.notifyMu.Lock()
		r.notified++
		r.notifyMu.Unlock()
	}))
	t.Cleanup(hook.Close)

	c := env.Client
	for _, obj := range []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: "git"},
			StringData: map[string]string{"username": GitUser, "password": GitPassword}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: "prometheus"},
			StringData: map[string]string{"token": PrometheusToken}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: "webhook"},
			StringData: map[string]string{"url": hook.URL + "/hook?token=" + WebhookToken}},
		&gwapiv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: "public"},
			Spec: gwapiv1.GatewaySpec{GatewayClassName: "rig",
				Listeners: []gwapiv1.Listener{{Name: "http", Port: 80, Protocol: gwapiv1.HTTPProtocolType}}}},
	} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
	}
	r.promotions = watchImages(t, env, r.Namespace)
	for _, app := range r.Apps {
		r.routes[app] = env.WatchRouteWrites(t, r.Namespace, app)
		if err := c.Create(ctx, r.target(app)); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, r.rollout(app)); err != nil {
			t.Fatal(err)
		}
	}
	for _, app := range r.Apps {
		if err := r.waitForRatio(ctx, app, 0); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// Notifications is how many phase changes the webhook was told of.
func (r *Rig) Notifications() int {
	r.notifyMu.Lock()
	defer r.notifyMu.Unlock()
	return r.notified
}

// StartManager starts the manager (again, after Kill) and waits until it
// is ready; the first time, also until every app's Rollout is Idle, so
// releases start from a primary. Its log is Dir/backstop.log, appended to
// across restarts.
func (r *Rig) StartManager(t testing.TB) *testenv.Manager {
	t.Helper()
	first := r.Manager == nil
	// The manager watches the rig's namespace only: the Rollouts earlier
	// tests of the package left in theirs are not its business.
	r.Manager = r.Env.StartManager(t, r.Dir, "backstop",
		append([]string{"--prometheus-address=" + r.Prometheus.URL(), "--watch-namespaces=" + r.Namespace}, r.opts.ManagerArgs...)...)
	if first {
		ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout)
		defer cancel()
		for _, app := range r.Apps {
			var ro backstopv1.Rollout
			err := poll(ctx, func() (bool, error) {
				return r.Env.Client.Get(ctx, r.Key(app), &ro) == nil && ro.Status.Phase == backstopv1.PhaseIdle, nil
			})
			if err != nil {
				t.Fatalf("waiting for %s to be Idle: %v; status %s", app, err, Describe(&ro))
			}
		}
	}
	return r.Manager
}

// Image is an app's image at a version.
func Image(app, version string) string { return app + ":" + version }

// Manifest is an app's deployment.yaml as the repository holds it: the
// image is what a release changes and what a revert finds.
func Manifest(app, image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  template:
    spec:
      containers:
        - name: app
          image: %[2]s
`, app, image)
}

func manifestPath(app string) string { return "apps/" + app + "/deployment.yaml" }

// Key is the namespace and name of an app's Rollout and Deployment.
func (r *Rig) Key(app string) types.NamespacedName {
	return types.NamespacedName{Namespace: r.Namespace, Name: app}
}

func (r *Rig) target(app string) *appsv1.Deployment {
	labels := map[string]string{"app": app}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: app},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: Image(app, "v1")}}},
			},
		},
	}
}

// ErrorQuery is the check's query: the error ratio the test set for the
// canary.
const ErrorQuery = `max(rig_error_ratio{namespace="{{.Namespace}}",deployment="{{.Canary}}"})`

// Steps are each Rollout's canary steps, and Weights the route states a
// release that passes every step writes, after the route's first state.
// The pause at 20% outlasts what a faulty canary takes to fail (its errors
// show at the next scrape, each second, and fail the check at its next
// evaluation, each second, on a machine that may be slow), so a faulty
// release is rolled back at 20%, never after reaching 60%.
var (
	Steps = []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](20)},
		{Pause: &backstopv1.PauseStep{Duration: &metav1.Duration{Duration: 6 * time.Second}}},
		{SetWeight: ptr.To[int32](60)},
		{Pause: &backstopv1.PauseStep{Duration: &metav1.Duration{Duration: 2 * time.Second}}},
	}
	Weights = []int{20, 60, 0}
)

func (r *Rig) rollout(app string) *backstopv1.Rollout {
	ro := &backstopv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: app},
		Spec: backstopv1.RolloutSpec{
			TargetRef: backstopv1.TargetReference{Name: app},
			Service:   backstopv1.ServiceSpec{Port: 8080},
			Routes:    []backstopv1.Route{{Name: app, ParentRefs: []gwapiv1.ParentReference{{Name: "public"}}}},
			Strategy:  backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: Steps}},
			Analysis: &backstopv1.AnalysisSpec{
				Interval: &metav1.Duration{Duration: time.Second},
				Prometheus: &backstopv1.PrometheusSource{Address: r.Prometheus.URL(),
					SecretRef: &backstopv1.LocalObjectReference{Name: "prometheus"}},
				Checks: []backstopv1.Check{{
					Name:      "error-ratio",
					CheckSpec: backstopv1.CheckSpec{Query: ErrorQuery, Max: ptr.To(backstopv1.Decimal("0.5"))},
				}},
			},
			Revert: &backstopv1.RevertSpec{Source: &backstopv1.GitSource{
				URL: r.Git.URL(Repo), Branch: Branch, Path: "apps/" + app,
				SecretRef: &backstopv1.LocalObjectReference{Name: "git"},
			}},
			Notifications: &backstopv1.NotificationSpec{Targets: []backstopv1.NotificationTarget{{
				Name: "hook", Type: backstopv1.NotifyWebhook,
				URLSecretRef: backstopv1.SecretKeyReference{Name: "webhook", Key: "url"},
			}}},
		},
	}
	if r.opts.Rollout != nil {
		r.opts.Rollout(ro)
	}
	return ro
}

// Release is one release the rig started.
type Release struct {
	App, Version string
	Faulty       bool
	// From is the image the release started from.
	From string
	// Commit is the commit that changed the manifest.
	Commit string
}

// Image is the release's image.
func (rel Release) Image() string { return Image(rel.App, rel.Version) }

// Release starts a release of app at version as a team with GitOps would:
// it commits the manifest and applies the image to the Deployment. The
// canary reports no errors until it gets traffic; then, from WaitForEnd, a
// faulty one reports an error ratio of 1. Release and WaitForEnd are safe
// to call for different apps at once.
func (r *Rig) Release(ctx context.Context, app, version string, faulty bool) (Release, error) {
	rel := Release{App: app, Version: version, Faulty: faulty}
	var d appsv1.Deployment
	if err := r.Env.Client.Get(ctx, r.Key(app), &d); err != nil {
		return rel, err
	}
	rel.From = d.Spec.Template.Spec.Containers[0].Image
	if err := r.SetErrorRatio(ctx, app, 0); err != nil {
		return rel, err
	}
	verb := "Release"
	if faulty {
		verb = "Release (faulty)"
	}
	var err error
	if rel.Commit, err = r.Commit(ctx, fmt.Sprintf("%s %s %s", verb, app, version),
		map[string]string{manifestPath(app): Manifest(app, rel.Image())}); err != nil {
		return rel, err
	}
	return rel, r.setImage(ctx, app, rel.Image())
}

// setImage applies an image to an app's Deployment, as the GitOps tool
// would after a commit.
func (r *Rig) setImage(ctx context.Context, app, image string) error {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: app}}
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":%q}]}}}}`, image)
	return r.Env.Client.Patch(ctx, d, client.RawPatch(types.StrategicMergePatchType, []byte(patch)))
}

// Commit writes files (path: content) in the working clone, commits them
// as a person would, and pushes, pulling with a rebase when someone (the
// manager's reverts) pushed first. It returns the commit pushed.
func (r *Rig) Commit(ctx context.Context, message string, files map[string]string) (string, error) {
	r.gitMu.Lock()
	defer r.gitMu.Unlock()
	if _, err := r.Git.Git(r.work.Dir, "pull", "--quiet", "--rebase"); err != nil {
		return "", err
	}
	for p, content := range files {
		if err := writeFile(r.work.Dir, p, content); err != nil {
			return "", err
		}
	}
	if _, err := r.Git.Git(r.work.Dir, "add", "-A"); err != nil {
		return "", err
	}
	if _, err := r.Git.Git(r.work.Dir, "commit", "--quiet", "-m", message); err != nil {
		return "", err
	}
	var err error
	for range 20 {
		if _, err = r.Git.Git(r.work.Dir, "push", "--quiet", "origin", "HEAD"); err == nil {
			return r.Git.Git(r.work.Dir, "rev-parse", "HEAD")
		}
		if _, err := r.Git.Git(r.work.Dir, "pull", "--quiet", "--rebase"); err != nil {
			return "", err
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("pushing %q: %w", message, err)
}

// WaitForEnd waits until a release has ended as it should: a healthy one
// promoted (the primary runs its image, phase Succeeded or Idle); a faulty one
// rolled back with its revert pushed, after which the rig applies the
// revert (the Deployment back at the image the release started from) and
// waits until the Rollout is Idle again. It returns an error naming the
// Rollout's state when the release ends otherwise or not before ctx ends.
func (r *Rig) WaitForEnd(ctx context.Context, rel Release) error {
	key := r.Key(rel.App)
	var ro backstopv1.Rollout
	failing := false
	ended := func() (bool, error) {
		if rel.Faulty && !failing {
			if states := r.RouteWrites(rel.App); len(states) > 0 && states[len(states)-1] != RouteState(rel.App, 0) {
				// The faulty version gets traffic: its errors show.
				r.errorRatio.WithLabelValues(r.Namespace, rel.App).Set(1)
				failing = true
			}
		}
		if err := r.Env.Client.Get(ctx, key, &ro); err != nil {
			return false, nil // a transient error; the deadline decides
		}
		promoted := (ro.Status.Phase == backstopv1.PhaseSucceeded || ro.Status.Phase == backstopv1.PhaseIdle) &&
			r.primaryImage(ctx, rel.App) == rel.Image()
		switch {
		case !rel.Faulty && promoted:
			return true, nil
		case rel.Faulty && ro.Status.Phase == backstopv1.PhaseRolledBack:
			st := ro.Status.Revert
			if st == nil {
				return false, nil
			}
			switch st.State {
			case backstopv1.RevertPushed:
				return true, nil
			case backstopv1.RevertConflict, backstopv1.RevertSkipped:
				return false, fmt.Errorf("revert %s: %s", st.State, st.Message)
			}
			return false, nil
		case rel.Faulty && promoted, !rel.Faulty && ro.Status.Phase == backstopv1.PhaseRolledBack:
			return false, fmt.Errorf("ended %s", ro.Status.Phase)
		}
		return false, nil
	}
	if err := poll(ctx, ended); err != nil {
		return fmt.Errorf("release %s %s (faulty %v): %w; status %s", rel.App, rel.Version, rel.Faulty, err, Describe(&ro))
	}
	if !rel.Faulty {
		return nil
	}
	if err := r.setImage(ctx, rel.App, rel.From); err != nil {
		return err
	}
	err := poll(ctx, func() (bool, error) {
		return r.Env.Client.Get(ctx, key, &ro) == nil && ro.Status.Phase == backstopv1.PhaseIdle, nil
	})
	if err != nil {
		return fmt.Errorf("after the revert of %s %s: %w; status %s", rel.App, rel.Version, err, Describe(&ro))
	}
	return nil
}

func (r *Rig) primaryImage(ctx context.Context, app string) string {
	var d appsv1.Deployment
	if err := r.Env.Client.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: app + "-primary"}, &d); err != nil {
		return ""
	}
	return d.Spec.Template.Spec.Containers[0].Image
}

// Describe sums up a Rollout's status in a line: phase, step, weight,
// revert, and the conditions that are not True.
func Describe(ro *backstopv1.Rollout) string {
	s := fmt.Sprintf("phase %s, step %d, weight %d", ro.Status.Phase, ro.Status.CurrentStep, ro.Status.CanaryWeight)
	if st := ro.Status.Revert; st != nil {
		s += fmt.Sprintf(", revert %s (%s)", st.State, st.Message)
	}
	for _, c := range ro.Status.Conditions {
		if c.Status != metav1.ConditionTrue {
			s += fmt.Sprintf(", %s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message)
		}
	}
	return s
}

// RouteWrites are the route states of an app's HTTPRoute, oldest first,
// as "app-primary=W,app-canary=W".
func (r *Rig) RouteWrites(app string) []string { return r.routes[app].States() }

// RouteWriteTimes are when the route states of RouteWrites were seen.
func (r *Rig) RouteWriteTimes(app string) []time.Time { return r.routes[app].Times() }

// RouteState is the route state with the canary at weight w.
func RouteState(app string, w int) string {
	return fmt.Sprintf("%s-primary=%d,%s-canary=%d", app, 100-w, app, w)
}

// Promotions are the images an app's primary Deployment ran, oldest
// first, one entry per change of its pod template's image.
func (r *Rig) Promotions(app string) []string { return r.promotions.of(app + "-primary") }

// RevertCommits are the commits on the branch whose trailer names a
// release of app (Backstop-Release: NAMESPACE/APP@REVISION), newest first,
// as "SHA RELEASE".
func (r *Rig) RevertCommits(app string) ([]string, error) {
	out, err := r.Git.Git(r.Git.Dir(Repo), "log", "--format=%H %(trailers:key=Backstop-Release,valueonly,separator=%x2C)", Branch)
	if err != nil {
		return nil, err
	}
	prefix := r.Namespace + "/" + app + "@"
	var commits []string
	for _, line := range strings.Split(out, "\n") {
		sha, release, _ := strings.Cut(strings.TrimSpace(line), " ")
		if strings.HasPrefix(release, prefix) {
			commits = append(commits, sha+" "+release)
		}
	}
	return commits, nil
}

// ManifestOnBranch is an app's manifest at the head of the branch.
func (r *Rig) ManifestOnBranch(app string) (string, error) {
	out, err := r.Git.Git(r.Git.Dir(Repo), "show", Branch+":"+manifestPath(app))
	return out + "\n", err
}

// SetErrorRatio sets what an app's pods report and waits until Prometheus
// has scraped it.
func (r *Rig) SetErrorRatio(ctx context.Context, app string, ratio float64) error {
	r.errorRatio.WithLabelValues(r.Namespace, app).Set(ratio)
	return r.waitForRatio(ctx, app, ratio)
}

func (r *Rig) waitForRatio(ctx context.Context, app string, ratio float64) error {
	q := fmt.Sprintf(`rig_error_ratio{namespace=%q,deployment=%q}`, r.Namespace, app)
	var last string
	err := poll(ctx, func() (bool, error) {
		v, _, _, err := r.prom.Query(ctx, q, time.Now())
		if err != nil {
			last = err.Error()
			return false, nil
		}
		vec, ok := v.(model.Vector)
		if !ok || len(vec) != 1 {
			last = v.String()
			return false, nil
		}
		last = vec[0].Value.String()
		return float64(vec[0].Value) == ratio, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for Prometheus to scrape %s = %v: %w (last: %s)", q, ratio, err, last)
	}
	return nil
}

// poll calls ok every 100ms until it holds, fails, or ctx ends.
func poll(ctx context.Context, ok func() (bool, error)) error {
	for {
		done, err := ok()
		if err != nil || done {
			return err
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func writeFile(root, p, content string) error {
	path := filepath.Join(root, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// deploymentImages records, from a watch, the images each Deployment of a
// namespace runs, one entry per change.
type deploymentImages struct {
	mu     sync.Mutex
	images map[string][]string
}

func watchImages(t testing.TB, env *testenv.Env, ns string) *deploymentImages {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := wc.Watch(ctx, &appsv1.DeploymentList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	di := &deploymentImages{images: map[string][]string{}}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			d, ok := ev.Object.(*appsv1.Deployment)
			if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) || len(d.Spec.Template.Spec.Containers) == 0 {
				continue
			}
			image := d.Spec.Template.Spec.Containers[0].Image
			di.mu.Lock()
			if seen := di.images[d.Name]; len(seen) == 0 || seen[len(seen)-1] != image {
				di.images[d.Name] = append(seen, image)
			}
			di.mu.Unlock()
		}
	}()
	return di
}

func (di *deploymentImages) of(name string) []string {
	di.mu.Lock()
	defer di.mu.Unlock()
	return append([]string(nil), di.images[name]...)
}
