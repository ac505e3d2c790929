// Command backstop is the Backstop manager: it runs the Rollout controller.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/leaderelection"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"backstop.dev/backstop/analysis"
	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers"
	"backstop.dev/backstop/controllers/workload"
	"backstop.dev/backstop/notify"
	"backstop.dev/backstop/revert"
	"backstop.dev/backstop/revert/source"
)

// options are the manager's command-line flags.
type options struct {
	metricsAddr             string
	probeAddr               string
	pprofAddr               string
	leaderElect             bool
	leaderElectionNamespace string
	leaseDuration           time.Duration
	renewDeadline           time.Duration
	retryPeriod             time.Duration
	shard                   string
	watchNamespaces         string
	logLevel                string
	logFormat               string
	dev                     bool
	maxConcurrentReconciles int
	prometheusAddress       string
	alertReceiverAddress    string
	alertReceiverSecret     string
	gitCacheDir             string
	gitCacheSize            string
	argoCDNamespace         string
	notificationSecret      string
	revertRetry             time.Duration
	secretPoll              time.Duration
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("backstop", flag.ContinueOnError)
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address the metrics endpoint binds to; 0 disables it.")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", "", "Address Go's profiles (/debug/pprof/) bind to, for measuring the manager; empty disables them. Bind it to loopback: the profiles are not authenticated.")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "Elect a leader so only one replica (of each shard, with --shard) acts at a time.")
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease; defaults to the manager's own namespace.")
	fs.DurationVar(&o.leaseDuration, "leader-election-lease-duration", 15*time.Second, "How long the leader's Lease holds without renewal: when the leader dies, a standby replica takes over once it has run out, within a few retry periods more.")
	fs.DurationVar(&o.renewDeadline, "leader-election-renew-deadline", 10*time.Second, "How long the leader tries to renew its Lease before it stops acting and exits; shorter than the lease duration.")
	fs.DurationVar(&o.retryPeriod, "leader-election-retry-period", 2*time.Second, "How often the replicas try to take or renew the Lease; the renew deadline must be more than 1.2 times it.")
	fs.StringVar(&o.shard, "shard", "", "Act only on the Rollouts labelled "+ShardLabel+"=<shard>, and elect the shard's leader with a Lease of its own, so that several managers share a cluster's Rollouts. Empty acts on the Rollouts without that label. A lowercase DNS label, such as a or shard-1.")
	fs.StringVar(&o.watchNamespaces, "watch-namespaces", "", "Comma-separated namespaces to watch; empty watches all.")
	fs.StringVar(&o.logLevel, "log-level", "info", "Log level: debug, info or error.")
	fs.StringVar(&o.logFormat, "log-format", "", "Log format: json or console. Defaults to json, or console with --dev.")
	fs.BoolVar(&o.dev, "dev", false, "Development mode: console logs, debug level, stack traces on warnings.")
	fs.IntVar(&o.maxConcurrentReconciles, "max-concurrent-reconciles", 16, "How many Rollouts are reconciled at once. A reconcile mostly waits on the API server, so this bounds how fast a burst of due steps is worked off, not CPU.")
	fs.StringVar(&o.prometheusAddress, "prometheus-address", "", "Prometheus-compatible API used by checks whose Rollout names none.")
	fs.StringVar(&o.alertReceiverAddress, "alert-receiver-address", "", "Address the Alertmanager webhook receiver binds to (path "+AlertReceiverPath+"); empty disables it.")
	fs.StringVar(&o.alertReceiverSecret, "alert-receiver-secret", "", "Secret (namespace/name) whose key \"token\" is the bearer token Alertmanager must send; required with --alert-receiver-address.")
	fs.StringVar(&o.gitCacheDir, "git-cache-dir", filepath.Join(os.TempDir(), "backstop-git"), "Directory of the clones kept between Git reverts, one per repository; it belongs to this process.")
	fs.StringVar(&o.gitCacheSize, "git-cache-size", "768Mi", "Disk the kept clones may use, as a Kubernetes quantity; the clones used least recently are removed beyond it. 0 keeps none.")
	fs.StringVar(&o.argoCDNamespace, "argocd-namespace", "argocd", "Namespace of Argo CD: its Applications when the tracking id names none, and its repository credentials.")
	fs.DurationVar(&o.revertRetry, "revert-retry", controllers.DefaultRevertRetry, "How long after its last attempt a failed Git revert is tried again, for as long as its Rollout stays RolledBack; at least 10s.")
	fs.DurationVar(&o.secretPoll, "secret-poll-interval", controllers.DefaultSecretPoll, "How often a Rollout whose target reads a Secret looks at it: Secrets are not watched, so a change to one starts a release within this time; at least 5s.")
	fs.StringVar(&o.notificationSecret, "notification-secret", "", "Secret (namespace/name) of the default notification target, which gets every Rollout's phase changes: keys \"type\" (Webhook, Slack or Teams), \"address\" (the URL) and \"phases\" (comma-separated); read at each message. Empty for none.")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if q, err := resource.ParseQuantity(o.gitCacheSize); err != nil || q.Sign() < 0 {
		return o, fmt.Errorf("--git-cache-size must be a quantity such as 768Mi, not %q", o.gitCacheSize)
	}
	if o.alertReceiverAddress != "" && o.alertReceiverSecret == "" {
		return o, errors.New("--alert-receiver-address needs --alert-receiver-secret: the receiver accepts only authenticated calls")
	}
	if _, err := notificationDefault(o); err != nil {
		return o, err
	}
	if o.revertRetry < minRevertRetry {
		return o, fmt.Errorf("--revert-retry must be at least %s, not %s: each try pushes up to 10 times", minRevertRetry, o.revertRetry)
	}
	if o.secretPoll < minSecretPoll {
		return o, fmt.Errorf("--secret-poll-interval must be at least %s, not %s: each look reads every Secret a target reads", minSecretPoll, o.secretPoll)
	}
	if o.maxConcurrentReconciles < 1 {
		return o, errors.New("--max-concurrent-reconciles must be at least 1")
	}
	if err := checkLeaderElection(o); err != nil {
		return o, err
	}
	if o.shard != "" {
		if errs := validation.IsDNS1123Label(o.shard); len(errs) > 0 {
			return o, fmt.Errorf("--shard must be a lowercase DNS label, not %q: %s", o.shard, strings.Join(errs, "; "))
		}
	}
	return o, nil
}

// minRevertRetry is the shortest --revert-retry: a failed revert is tried
// again no more often than this, so a Git server that refuses every push is
// not hammered.
const minRevertRetry = 10 * time.Second

// minSecretPoll is the shortest --secret-poll-interval: each look at a
// Rollout whose target reads Secrets gets each of them from the apiserver.
const minSecretPoll = 5 * time.Second

// checkLeaderElection refuses timings the leader election cannot work with
// (client-go's own rules): the leader must give up before its Lease
// expires, and retry more than once before it gives up.
func checkLeaderElection(o options) error {
	switch {
	case o.leaseDuration <= 0 || o.renewDeadline <= 0 || o.retryPeriod <= 0:
		return errors.New("--leader-election-lease-duration, --leader-election-renew-deadline and --leader-election-retry-period must be positive")
	case o.renewDeadline >= o.leaseDuration:
		return fmt.Errorf("--leader-election-renew-deadline (%s) must be shorter than --leader-election-lease-duration (%s): the leader must stop acting before a standby may take over", o.renewDeadline, o.leaseDuration)
	case float64(o.renewDeadline) <= leaderelection.JitterFactor*float64(o.retryPeriod):
		return fmt.Errorf("--leader-election-renew-deadline (%s) must be longer than %.1f times --leader-election-retry-period (%s): the leader must be able to retry a renewal", o.renewDeadline, leaderelection.JitterFactor, o.retryPeriod)
	}
	return nil
}

// ShardLabel is the label of a Rollout that names the shard owning it (see
// --shard).
const ShardLabel = "backstop.dev/shard"

// leaderElectionID is the name of the Lease that elects the leader of a
// shard; "" is the Rollouts without a shard.
func leaderElectionID(shard string) string {
	if shard == "" {
		return "backstop-leader.backstop.dev"
	}
	return "backstop-leader-" + shard + ".backstop.dev"
}

// shardSelector selects the Rollouts a manager of the shard owns: those
// labelled with it, or, without a shard, those without the label, so that
// an unsharded manager and sharded ones never act on the same Rollout.
func shardSelector(shard string) labels.Selector {
	var req *labels.Requirement
	var err error
	if shard == "" {
		req, err = labels.NewRequirement(ShardLabel, selection.DoesNotExist, nil)
	} else {
		req, err = labels.NewRequirement(ShardLabel, selection.Equals, []string{shard})
	}
	utilruntime.Must(err) // parseFlags checked the shard
	return labels.NewSelector().Add(*req)
}

// notificationDefault is the Secret of --notification-secret; nil for none.
func notificationDefault(o options) (*types.NamespacedName, error) {
	if o.notificationSecret == "" {
		return nil, nil
	}
	ns, name, ok := strings.Cut(o.notificationSecret, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("--notification-secret must be namespace/name, not %q", o.notificationSecret)
	}
	return &types.NamespacedName{Namespace: ns, Name: name}, nil
}

// gitCache is the cache of clones the flags ask for; nil for none.
func gitCache(o options) *revert.Cache {
	q := resource.MustParse(o.gitCacheSize)
	if q.IsZero() {
		return nil
	}
	return &revert.Cache{Dir: o.gitCacheDir, MaxBytes: q.Value()}
}

// logger builds the zap logger from the flags.
func logger(o options) (zap.Opts, error) {
	var level zapcore.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	format := o.logFormat
	if format == "" {
		format = "json"
		if o.dev {
			format = "console"
		}
	}
	var encoder zap.Opts
	switch format {
	case "json":
		encoder = zap.JSONEncoder()
	case "console":
		encoder = zap.ConsoleEncoder()
	default:
		return nil, fmt.Errorf("--log-format must be json or console, not %q", format)
	}
	return func(zo *zap.Options) {
		zap.UseDevMode(o.dev)(zo)
		encoder(zo)
		if !o.dev || o.logLevel != "info" {
			zap.Level(level)(zo)
		}
	}, nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "backstop:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	logOpts, err := logger(o)
	if err != nil {
		return err
	}
	log := zap.New(logOpts)
	if o.shard != "" {
		// Every line says which shard's manager wrote it.
		log = log.WithValues("shard", o.shard)
	}
	ctrl.SetLogger(log)
	setupLog := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(gwapiv1.Install(scheme))
	utilruntime.Must(backstopv1.AddToScheme(scheme))

	// The manager never reads managedFields, often the largest part of a
	// cached Deployment, Service or route: the cache drops them. Updates
	// from cached objects leave them alone, since a write without them
	// keeps the server's. Of the Services, it reads only its own; of the
	// Rollouts, only its shard's: a Rollout labelled into another shard
	// leaves the cache, and the reconciler stops acting on it.
	cacheOpts := cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&backstopv1.Rollout{}: {Label: shardSelector(o.shard)},
			&corev1.Service{}:     {Label: workload.ServiceCacheSelector()},
			&appsv1.Deployment{}:  {Transform: stripDeployment},
		},
	}
	if o.watchNamespaces != "" {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range strings.Split(o.watchNamespaces, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				cacheOpts.DefaultNamespaces[ns] = cache.Config{}
			}
		}
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         cacheOpts,
		Metrics:                       metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:        o.probeAddr,
		PprofBindAddress:              o.pprofAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              leaderElectionID(o.shard),
		LeaderElectionNamespace:       o.leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &o.leaseDuration,
		RenewDeadline:                 &o.renewDeadline,
		RetryPeriod:                   &o.retryPeriod,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}

	analyzer := &analysis.Analyzer{
		Client:            mgr.GetClient(),
		Secrets:           mgr.GetAPIReader(),
		DefaultPrometheus: o.prometheusAddress,
	}
	if o.alertReceiverAddress != "" {
		analyzer.Alerts = analysis.NewAlertStore(0)
	}
	clusterDefault, _ := notificationDefault(o) // parseFlags checked it
	notifier := notify.New(notify.Options{
		Resolve:        notify.SecretResolver(mgr.GetAPIReader()),
		ClusterDefault: clusterDefault,
		Events:         mgr.GetEventRecorder(controllers.ControllerName),
		Log:            ctrl.Log.WithName("notify"),
	})
	if err := mgr.Add(notifier); err != nil {
		return fmt.Errorf("adding the notifier: %w", err)
	}
	r := &controllers.RolloutReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder(controllers.ControllerName),
		Defaults:  controllers.Defaults{PrometheusAddress: o.prometheusAddress},
		Analyzer:  analyzer,
		Reverter: &controllers.GitReverter{Reader: mgr.GetAPIReader(), Cache: gitCache(o),
			Source: source.Options{ArgoCDNamespace: o.argoCDNamespace}},
		Source:      source.Options{ArgoCDNamespace: o.argoCDNamespace},
		Notifier:    notifier,
		RevertRetry: o.revertRetry,
		SecretPoll:  o.secretPoll,
	}
	if err := r.SetupWithManager(mgr, o.maxConcurrentReconciles); err != nil {
		return fmt.Errorf("setting up the Rollout controller: %w", err)
	}
	if o.alertReceiverAddress != "" {
		recv, err := newAlertReceiver(o.alertReceiverAddress, o.alertReceiverSecret, mgr.GetAPIReader(), analyzer.Alerts,
			ctrl.Log.WithName("alert-receiver"), r.WakeReleases)
		if err != nil {
			return err
		}
		if err := mgr.Add(recv); err != nil {
			return fmt.Errorf("adding the alert receiver: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the readiness check: %w", err)
	}

	setupLog.Info("Starting the manager", "watchNamespaces", o.watchNamespaces, "leaderElection", o.leaderElect,
		"lease", leaderElectionID(o.shard), "rollouts", shardSelector(o.shard).String())
	return mgr.Start(ctrl.SetupSignalHandler())
}

// stripDeployment drops from a cached Deployment what the manager never
// reads: managedFields, and kubectl's last-applied-configuration, a second
// copy of the whole object on every Deployment applied with kubectl. Nothing
// is lost on the server: the manager changes a target only through its
// scale subresource, and updates only the primaries it made.
func stripDeployment(obj any) (any, error) {
	o, err := meta.Accessor(obj)
	if err != nil {
		return obj, nil
	}
	if o.GetManagedFields() != nil {
		o.SetManagedFields(nil)
	}
	if a := o.GetAnnotations(); a != nil {
		if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
			delete(a, corev1.LastAppliedConfigAnnotation)
			o.SetAnnotations(a)
		}
	}
	return obj, nil
}
