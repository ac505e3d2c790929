// Command backstop is the Backstop manager: it runs the Rollout controller.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap/zapcore"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
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
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("backstop", flag.ContinueOnError)
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address the metrics endpoint binds to; 0 disables it.")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", "", "Address Go's profiles (/debug/pprof/) bind to, for measuring the manager; empty disables them. Bind it to loopback: the profiles are not authenticated.")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "Elect a leader so only one replica acts at a time.")
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease; defaults to the manager's own namespace.")
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
	if o.maxConcurrentReconciles < 1 {
		return o, errors.New("--max-concurrent-reconciles must be at least 1")
	}
	return o, nil
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
	ctrl.SetLogger(zap.New(logOpts))
	setupLog := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(gwapiv1.Install(scheme))
	utilruntime.Must(backstopv1.AddToScheme(scheme))

	// The manager never reads managedFields, often the largest part of a
	// cached Deployment, Service or route: the cache drops them. Updates
	// from cached objects leave them alone, since a write without them
	// keeps the server's. Of the Services, it reads only its own.
	cacheOpts := cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Service{}:    {Label: workload.ServiceCacheSelector()},
			&appsv1.Deployment{}: {Transform: stripDeployment},
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
		LeaderElectionID:              "backstop-leader.backstop.dev",
		LeaderElectionNamespace:       o.leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
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
		Source:   source.Options{ArgoCDNamespace: o.argoCDNamespace},
		Notifier: notifier,
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

	setupLog.Info("Starting the manager", "watchNamespaces", o.watchNamespaces, "leaderElection", o.leaderElect)
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
