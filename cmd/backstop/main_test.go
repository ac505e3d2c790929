package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/notify"
	"backstop.dev/backstop/test/testenv"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    func(options) bool
		wantErr string
	}{
		{
			name: "defaults",
			want: func(o options) bool {
				return o.leaderElect && o.metricsAddr == ":8080" && o.probeAddr == ":8081" &&
					o.maxConcurrentReconciles == 16 && o.logLevel == "info" && o.argoCDNamespace == "argocd" && o.pprofAddr == "" &&
					o.leaseDuration == 15*time.Second && o.renewDeadline == 10*time.Second && o.retryPeriod == 2*time.Second && o.shard == "" &&
					o.secretPoll == time.Minute
			},
		},
		{
			name: "leader election timings",
			args: []string{"--leader-election-lease-duration=6s", "--leader-election-renew-deadline=4s", "--leader-election-retry-period=1s"},
			want: func(o options) bool {
				return o.leaseDuration == 6*time.Second && o.renewDeadline == 4*time.Second && o.retryPeriod == time.Second
			},
		},
		{
			name:    "a renew deadline as long as the lease",
			args:    []string{"--leader-election-lease-duration=10s", "--leader-election-renew-deadline=10s"},
			wantErr: "--leader-election-renew-deadline (10s) must be shorter than --leader-election-lease-duration (10s)",
		},
		{
			name:    "a retry period too close to the renew deadline",
			args:    []string{"--leader-election-renew-deadline=10s", "--leader-election-retry-period=9s"},
			wantErr: "must be longer than 1.2 times --leader-election-retry-period (9s)",
		},
		{
			name:    "a lease of no time",
			args:    []string{"--leader-election-lease-duration=0s"},
			wantErr: "must be positive",
		},
		{
			name: "a shard",
			args: []string{"--shard=shard-1"},
			want: func(o options) bool { return o.shard == "shard-1" },
		},
		{
			name: "a Secret poll interval",
			args: []string{"--secret-poll-interval=30s"},
			want: func(o options) bool { return o.secretPoll == 30*time.Second },
		},
		{name: "a Secret poll interval too short", args: []string{"--secret-poll-interval=1s"}, wantErr: "--secret-poll-interval must be at least 5s, not 1s"},
		{name: "a shard in capitals", args: []string{"--shard=A"}, wantErr: `--shard must be a lowercase DNS label, not "A"`},
		{name: "a shard with a dot", args: []string{"--shard=a.b"}, wantErr: `--shard must be a lowercase DNS label, not "a.b"`},
		{
			name: "profiles on loopback",
			args: []string{"--pprof-bind-address=127.0.0.1:6060"},
			want: func(o options) bool { return o.pprofAddr == "127.0.0.1:6060" },
		},
		{
			name: "leader election off and namespaces",
			args: []string{"--leader-elect=false", "--watch-namespaces=a,b"},
			want: func(o options) bool { return !o.leaderElect && o.watchNamespaces == "a,b" },
		},
		{name: "zero concurrency", args: []string{"--max-concurrent-reconciles=0"}, wantErr: "at least 1"},
		{name: "revert retry by default", want: func(o options) bool { return o.revertRetry == 5*time.Minute }},
		{name: "a revert retry", args: []string{"--revert-retry=90s"}, want: func(o options) bool { return o.revertRetry == 90*time.Second }},
		{name: "a revert retry too short", args: []string{"--revert-retry=1s"}, wantErr: "--revert-retry must be at least 10s, not 1s"},
		{name: "unknown flag", args: []string{"--frobnicate"}, wantErr: "frobnicate"},
		{
			name:    "alert receiver without a token Secret",
			args:    []string{"--alert-receiver-address=:9444"},
			wantErr: "--alert-receiver-address needs --alert-receiver-secret",
		},
		{
			name: "alert receiver with a token Secret",
			args: []string{"--alert-receiver-address=:9444", "--alert-receiver-secret=backstop-system/alertmanager"},
			want: func(o options) bool {
				return o.alertReceiverAddress == ":9444" && o.alertReceiverSecret == "backstop-system/alertmanager"
			},
		},
		{
			name: "a Git cache of 2Gi",
			args: []string{"--git-cache-dir=/var/cache/git", "--git-cache-size=2Gi"},
			want: func(o options) bool {
				c := gitCache(o)
				return c != nil && c.Dir == "/var/cache/git" && c.MaxBytes == 2<<30
			},
		},
		{
			name: "Argo CD elsewhere",
			args: []string{"--argocd-namespace=gitops"},
			want: func(o options) bool { return o.argoCDNamespace == "gitops" },
		},
		{name: "no Git cache", args: []string{"--git-cache-size=0"}, want: func(o options) bool { return gitCache(o) == nil }},
		{
			name: "no default notification target",
			want: func(o options) bool { d, err := notificationDefault(o); return d == nil && err == nil },
		},
		{
			name: "a default notification target",
			args: []string{"--notification-secret=backstop-system/notify"},
			want: func(o options) bool {
				d, err := notificationDefault(o)
				return err == nil && d != nil && d.Namespace == "backstop-system" && d.Name == "notify"
			},
		},
		{
			name:    "a default notification target without a namespace",
			args:    []string{"--notification-secret=notify"},
			wantErr: `--notification-secret must be namespace/name, not "notify"`,
		},
		{name: "a Git cache size that is no quantity", args: []string{"--git-cache-size=lots"}, wantErr: `not "lots"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseFlags(%q) error = %v, want it to mention %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tt.args, err)
			}
			if !tt.want(o) {
				t.Errorf("parseFlags(%q) = %+v", tt.args, o)
			}
		})
	}
}

// TestShards: each shard owns the Rollouts labelled with its name and
// elects its leader with a Lease of its own; a manager without a shard owns
// the Rollouts without the label, so no Rollout has two owners; a Rollout
// labelled with an empty shard has none.
func TestShards(t *testing.T) {
	rollouts := map[string]labels.Set{
		"unlabelled":  {"app": "web"},
		"in a":        {ShardLabel: "a"},
		"in b":        {ShardLabel: "b", "app": "web"},
		"in no shard": {ShardLabel: ""},
	}
	tests := []struct {
		shard string
		lease string
		owns  []string
	}{
		{shard: "", lease: "backstop-leader.backstop.dev", owns: []string{"unlabelled"}},
		{shard: "a", lease: "backstop-leader-a.backstop.dev", owns: []string{"in a"}},
		{shard: "b", lease: "backstop-leader-b.backstop.dev", owns: []string{"in b"}},
	}
	owners := map[string]int{}
	for _, tt := range tests {
		name := "shard " + tt.shard
		if tt.shard == "" {
			name = "no shard"
		}
		t.Run(name, func(t *testing.T) {
			if got := leaderElectionID(tt.shard); got != tt.lease {
				t.Errorf("lease %q; want %q", got, tt.lease)
			}
			var owns []string
			for name, set := range rollouts {
				if shardSelector(tt.shard).Matches(set) {
					owns = append(owns, name)
					owners[name]++
				}
			}
			if strings.Join(owns, ",") != strings.Join(tt.owns, ",") {
				t.Errorf("owns %q; want %q", owns, tt.owns)
			}
		})
	}
	want := map[string]int{"unlabelled": 1, "in a": 1, "in b": 1}
	for name := range rollouts {
		if owners[name] != want[name] {
			t.Errorf("Rollout %s has %d owners; want %d", name, owners[name], want[name])
		}
	}
	t.Logf("owners of %d Rollouts across %d managers: %v", len(rollouts), len(tests), owners)
}

func TestLoggerOptions(t *testing.T) {
	tests := []struct {
		name    string
		o       options
		wantErr string
	}{
		{name: "json by default", o: options{logLevel: "info"}},
		{name: "console in dev", o: options{logLevel: "info", dev: true}},
		{name: "debug level", o: options{logLevel: "debug", logFormat: "console"}},
		{name: "bad level", o: options{logLevel: "loud"}, wantErr: "--log-level"},
		{name: "bad format", o: options{logLevel: "info", logFormat: "xml"}, wantErr: "--log-format must be json or console"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := logger(tt.o)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("logger(%+v): %v", tt.o, err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("logger(%+v) error = %v, want it to mention %q", tt.o, err, tt.wantErr)
			}
		})
	}
}

// TestManagerBinary runs the real manager binary against a real apiserver,
// as a cluster would: it elects itself leader, serves its probes and
// metrics, reconciles a Rollout, posts its phase change to the default
// notification target, and exits cleanly on SIGTERM.
func TestManagerBinary(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()

	bin := filepath.Join(t.TempDir(), "backstop")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building the manager: %v\n%s", err, out)
	}
	probe, metrics, alerts := freePort(t), freePort(t), freePort(t)
	notified := make(chan []byte, 16)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case notified <- body:
		default:
		}
	}))
	defer receiver.Close()
	var logs bytes.Buffer
	cmd := exec.Command(bin,
		"--health-probe-bind-address="+probe,
		"--metrics-bind-address="+metrics,
		"--leader-election-namespace=default",
		"--prometheus-address=http://127.0.0.1:9",
		"--alert-receiver-address="+alerts,
		"--alert-receiver-secret=manager-binary/alertmanager",
		"--notification-secret=manager-binary/notify",
	)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("manager output:\n%s", logs.String())
		}
	}()

	for _, path := range []string{"/healthz", "/readyz"} {
		testenv.Eventually(t, "GET "+path, func() bool { return httpOK("http://" + probe + path) })
	}
	testenv.Eventually(t, "metrics", func() bool { return httpOK("http://" + metrics + "/metrics") })

	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "manager-binary"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	token := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alertmanager", Namespace: ns.Name}, Data: map[string][]byte{"token": []byte("am-t0ken")}}
	if err := env.Client.Create(ctx, token); err != nil {
		t.Fatal(err)
	}
	// The default target takes the phase changes to Initializing, which
	// targets leave out unless they name it.
	hook := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "notify", Namespace: ns.Name}, StringData: map[string]string{
		"type": "Webhook", "address": receiver.URL + "/hooks/n0tify-t0ken", "phases": "Initializing"}}
	if err := env.Client.Create(ctx, hook); err != nil {
		t.Fatal(err)
	}
	// The Alertmanager receiver runs on the leader and takes only calls
	// with the Secret's bearer token.
	webhook := "http://" + alerts + AlertReceiverPath
	testenv.Eventually(t, "the alert receiver refuses a call without the token", func() bool {
		return postAlerts(webhook, "") == http.StatusUnauthorized
	})
	if code := postAlerts(webhook, "wrong"); code != http.StatusUnauthorized {
		t.Errorf("a call with a wrong token: %d; want 401", code)
	}
	if code := postAlerts(webhook, "am-t0ken"); code != http.StatusOK {
		t.Errorf("a call with the token: %d; want 200", code)
	}
	ro := &backstopv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns.Name},
		Spec: backstopv1.RolloutSpec{
			TargetRef: backstopv1.TargetReference{Name: "absent"},
			Service:   backstopv1.ServiceSpec{Port: 80},
			Routes:    []backstopv1.Route{{Name: "app", Existing: true}},
			Strategy: backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{
				Steps: []backstopv1.CanaryStep{{SetWeight: ptr.To[int32](50)}},
			}},
		},
	}
	if err := env.Client.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "Ready=False TargetNotFound", func() bool {
		var got backstopv1.Rollout
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &got); err != nil {
			return false
		}
		c := meta.FindStatusCondition(got.Status.Conditions, backstopv1.ReadyCondition)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == backstopv1.ReasonTargetNotFound
	})
	select {
	case body := <-notified:
		var n notify.Notification
		if err := json.Unmarshal(body, &n); err != nil {
			t.Fatalf("the default target got %s: %v", body, err)
		}
		if n.Type != notify.EventType || n.Namespace != ns.Name || n.Rollout != "app" || n.Phase != backstopv1.PhaseInitializing {
			t.Errorf("the default target got %+v; want the Rollout's change to Initializing", n)
		}
	case <-time.After(testenv.Timeout):
		t.Error("the default notification target got nothing")
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("manager exited with %v after SIGTERM", err)
		}
	case <-time.After(testenv.Timeout):
		t.Fatal("manager did not exit after SIGTERM")
	}
	if strings.Contains(logs.String(), "am-t0ken") {
		t.Errorf("the logs show the alert receiver's token")
	}
	if strings.Contains(logs.String(), "n0tify-t0ken") {
		t.Errorf("the logs show the notification URL")
	}
	if !strings.Contains(logs.String(), `"msg":"Starting the manager"`) {
		t.Errorf("logs are not JSON by default; got:\n%s", logs.String())
	}
}

// postAlerts posts an Alertmanager webhook with a bearer token (none when
// empty) and returns the status code, or 0 when the call failed.
func postAlerts(url, token string) int {
	body := `{"version":"4","status":"firing","receiver":"backstop","groupKey":"{}","alerts":[` +
		`{"status":"firing","labels":{"alertname":"Test","namespace":"manager-binary","rollout":"app"},"startsAt":"2026-01-01T00:00:00Z"}]}`
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func httpOK(url string) bool {
	resp, err := http.Get(url) //nolint:gosec // a loopback address of the test
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestStripDeployment: the cache keeps of a Deployment what the manager
// reads, without managedFields or kubectl's copy of the whole object.
func TestStripDeployment(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		want        map[string]string
	}{
		{"applied with kubectl",
			map[string]string{corev1.LastAppliedConfigAnnotation: `{"kind":"Deployment"}`, "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/web"},
			map[string]string{"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/web"}},
		{"no annotations", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: tt.annotations,
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}}}
			d.Spec.Template.Annotations = map[string]string{corev1.LastAppliedConfigAnnotation: "kept: not the Deployment's"}
			out, err := stripDeployment(d)
			if err != nil {
				t.Fatal(err)
			}
			got := out.(*appsv1.Deployment)
			if got.ManagedFields != nil {
				t.Errorf("managedFields kept: %+v", got.ManagedFields)
			}
			if len(got.Annotations) != len(tt.want) || got.Annotations["argocd.argoproj.io/tracking-id"] != tt.want["argocd.argoproj.io/tracking-id"] {
				t.Errorf("annotations %v; want %v", got.Annotations, tt.want)
			}
			if len(got.Spec.Template.Annotations) != 1 {
				t.Errorf("the pod template's annotations changed: %v", got.Spec.Template.Annotations)
			}
		})
	}
}
