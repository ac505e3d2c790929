package controllers_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"backstop.dev/backstop/analysis"
	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers"
	"backstop.dev/backstop/controllers/workload"
	"backstop.dev/backstop/test/gittest"
	"backstop.dev/backstop/test/testenv"
)

// configEnv is releaseEnv with the target's pod spec changed by edit and
// the objects of fixtures created first.
func configEnv(t *testing.T, edit func(*corev1.PodSpec), fixtures ...fixture) string {
	t.Helper()
	ns := env.Namespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	env.RunDeploymentController(ctx, ns)
	env.RunGateway(ctx, ns)
	for _, f := range fixtures {
		mustCreate(t, f(ns))
	}
	d := deployment("app")(ns).(*appsv1.Deployment)
	d.Spec.Replicas = ptr.To[int32](2)
	if edit != nil {
		edit(&d.Spec.Template.Spec)
	}
	mustCreate(t, d)
	mustCreate(t, gateway("public")(ns))
	return ns
}

func configMap(name string, data, annotations map[string]string) fixture {
	return func(ns string) client.Object {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations}, Data: data}
	}
}

func secretOf(name string, data map[string]string) fixture {
	return func(ns string) client.Object {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}
	}
}

// readsConfigMap mounts the ConfigMap name and reads it as environment.
func readsConfigMap(name string, optional bool) func(*corev1.PodSpec) {
	return func(s *corev1.PodSpec) {
		ref := corev1.LocalObjectReference{Name: name}
		s.Volumes = append(s.Volumes, corev1.Volume{Name: "config", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: ref, Optional: ptr.To(optional)}}})
		s.Containers[0].EnvFrom = append(s.Containers[0].EnvFrom, corev1.EnvFromSource{
			ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref, Optional: ptr.To(optional)}})
	}
}

// readsSecretKey reads key of the Secret name as the variable PASSWORD.
func readsSecretKey(name, key string) func(*corev1.PodSpec) {
	return func(s *corev1.PodSpec) {
		s.Containers[0].Env = append(s.Containers[0].Env, corev1.EnvVar{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}}})
	}
}

func configMapData(t *testing.T, ns, name string) map[string]string {
	t.Helper()
	var cm corev1.ConfigMap
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &cm); err != nil {
		t.Fatalf("ConfigMap %s: %v", name, err)
	}
	return cm.Data
}

func setConfigMapData(t *testing.T, ns, name string, data map[string]string) {
	t.Helper()
	var cm corev1.ConfigMap
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &cm); err != nil {
		t.Fatal(err)
	}
	cm.Data = data
	if err := env.Client.Update(context.Background(), &cm); err != nil {
		t.Fatal(err)
	}
}

func refsOf(d *appsv1.Deployment) []workload.ConfigRef { return workload.ConfigRefs(d.Spec.Template) }

// copyOf is the name of the primary's copy of the config source, as the
// primary's template records it, and checks that the template reads it.
func copyOf(t *testing.T, primary *appsv1.Deployment, kind workload.ConfigKind, source string) string {
	t.Helper()
	for _, cp := range workload.PrimaryConfigsOf(primary.Spec.Template).Copies {
		if cp.Kind == kind && cp.Name == source {
			if !strings.HasPrefix(cp.Copy, "app-primary-"+source+"-") || !reflect.DeepEqual(refsOf(primary), oneRef(kind, cp.Copy)) {
				t.Errorf("the primary reads %v; want its copy %s of %s %s", refsOf(primary), cp.Copy, kind, source)
			}
			return cp.Copy
		}
	}
	t.Fatalf("the primary records no copy of %s %s; it reads %v", kind, source, refsOf(primary))
	return ""
}

// exists says whether the ConfigMap or Secret name exists in ns.
func exists(t *testing.T, ns, name string, obj client.Object) bool {
	t.Helper()
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

func oneRef(kind workload.ConfigKind, name string) []workload.ConfigRef {
	return []workload.ConfigRef{{Kind: kind, Name: name}}
}

func configCanary(ns string) *backstopv1.Rollout {
	return releaseRollout(ns, backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{Steps: []backstopv1.CanaryStep{
		{SetWeight: ptr.To[int32](50)},
		{Pause: &backstopv1.PauseStep{}},
	}}})
}

// TestConfigMapChangeIsReleased: a change to the data of a ConfigMap the
// target reads starts a release. The canary (the target) reads the
// ConfigMap itself; the primary keeps reading its copy, untouched until the
// promotion, which writes the new data to the copy and rolls the primary's
// pods.
func TestConfigMapChangeIsReleased(t *testing.T) {
	ns := configEnv(t, readsConfigMap("app-config", false), configMap("app-config", map[string]string{"mode": "v1"}, nil))
	ro := configCanary(ns)
	mustCreate(t, ro)
	idle := waitForPhase(t, ro, backstopv1.PhaseIdle, -1)

	primary := deploymentOf(t, ns, "app-primary")
	v1Copy := copyOf(t, primary, workload.KindConfigMap, "app-config")
	var cp corev1.ConfigMap
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: v1Copy}, &cp); err != nil {
		t.Fatal(err)
	}
	if cp.Data["mode"] != "v1" || !metav1.IsControlledBy(&cp, get(t, ro)) || cp.Labels[backstopv1.LabelManagedBy] != backstopv1.ManagedBy ||
		cp.Labels[backstopv1.LabelRollout] != "app" || cp.Annotations[workload.ConfigSourceAnnotation] != "app-config" || !ptr.Deref(cp.Immutable, false) {
		t.Errorf("the copy: data %v, owners %v, labels %v, annotations %v, immutable %v; want mode=v1, controlled by the Rollout, labelled, naming its source, immutable",
			cp.Data, cp.OwnerReferences, cp.Labels, cp.Annotations, cp.Immutable)
	}
	if idle.Status.StableRevision != workload.Revision(primary) {
		t.Errorf("stable revision %s; the primary's is %s", idle.Status.StableRevision, workload.Revision(primary))
	}
	if tmpl := deploymentOf(t, ns, "app").Spec.Template; idle.Status.StableRevision == workload.TemplateHash(tmpl) ||
		workload.TemplateHash(primary.Spec.Template) != workload.TemplateHash(tmpl) {
		t.Errorf("stable revision %s, the target's template hash %s, the primary's %s: want the revision to take in the ConfigMap and the templates to hash the same",
			idle.Status.StableRevision, workload.TemplateHash(tmpl), workload.TemplateHash(primary.Spec.Template))
	}

	setConfigMapData(t, ns, "app-config", map[string]string{"mode": "v2"})
	paused := waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	if paused.Status.CanaryRevision == idle.Status.StableRevision {
		t.Errorf("canary revision %s is the stable one", paused.Status.CanaryRevision)
	}
	if msg := waitForEvent(t, context.Background(), ro, "Normal", "ReleaseStarted"); !strings.HasSuffix(msg, " (changed: ConfigMap app-config)") {
		t.Errorf("ReleaseStarted says %q; want it to name the ConfigMap that changed", msg)
	}
	target := deploymentOf(t, ns, "app")
	if got, want := refsOf(target), oneRef(workload.KindConfigMap, "app-config"); !reflect.DeepEqual(got, want) || ptr.Deref(target.Spec.Replicas, 0) == 0 {
		t.Errorf("the canary reads %v with %d replicas; want %v, scaled up", got, ptr.Deref(target.Spec.Replicas, 0), want)
	}
	if got := configMapData(t, ns, v1Copy)["mode"]; got != "v1" {
		t.Errorf("the primary's copy holds mode=%s during the release; want v1", got)
	}
	if p := deploymentOf(t, ns, "app-primary"); p.Generation != primary.Generation {
		t.Errorf("the primary changed during the release (generation %d -> %d)", primary.Generation, p.Generation)
	}

	setGate(t, ro, "promote")
	done := waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
	promoted := deploymentOf(t, ns, "app-primary")
	if v2Copy := copyOf(t, promoted, workload.KindConfigMap, "app-config"); v2Copy == v1Copy || configMapData(t, ns, v2Copy)["mode"] != "v2" {
		t.Errorf("the primary reads %s after the promotion; want a new copy that holds mode=v2", v2Copy)
	}
	if exists(t, ns, v1Copy, &corev1.ConfigMap{}) {
		t.Errorf("the old copy %s is still there after the promotion, with no bake time to keep it for", v1Copy)
	}
	before, after := primary.Spec.Template.Annotations[workload.ConfigDigestAnnotation], promoted.Spec.Template.Annotations[workload.ConfigDigestAnnotation]
	if promoted.Generation == primary.Generation || before == after || after == "" {
		t.Errorf("after the promotion the primary's generation is %d (was %d) and its pods' config digest %q (was %q): want the pods to roll",
			promoted.Generation, primary.Generation, after, before)
	}
	if workload.Revision(promoted) != paused.Status.CanaryRevision || done.Status.StableRevision != paused.Status.CanaryRevision {
		t.Errorf("the primary runs %s and the stable revision is %s; want the promoted %s",
			workload.Revision(promoted), done.Status.StableRevision, paused.Status.CanaryRevision)
	}
}

// TestConfigBadConfigIsRolledBack: a ConfigMap change that fails its checks
// is rolled back like a bad image: the primary and its copy are never
// touched, and once the ConfigMap is put back the Rollout goes idle.
func TestConfigBadConfigIsRolledBack(t *testing.T) {
	ns := configEnv(t, readsConfigMap("app-config", false), configMap("app-config", map[string]string{"pool": "10"}, nil))
	ro := configCanary(ns)
	ro.Spec.Analysis = &backstopv1.AnalysisSpec{Interval: &metav1.Duration{Duration: time.Second}}
	mustCreate(t, ro)
	idle := waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	primary := deploymentOf(t, ns, "app-primary")
	stableCopy := copyOf(t, primary, workload.KindConfigMap, "app-config")

	setConfigMapData(t, ns, "app-config", map[string]string{"pool": "0"})
	waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	verdicts.set(ro, analysis.Outcome{Result: backstopv1.VerdictFail, Check: "error-rate", Message: "0.4 > 0.01"})
	rolled := waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)
	if rolled.Status.StableRevision != idle.Status.StableRevision {
		t.Errorf("stable revision %s after the rollback; want %s", rolled.Status.StableRevision, idle.Status.StableRevision)
	}
	if got := configMapData(t, ns, stableCopy)["pool"]; got != "10" {
		t.Errorf("the primary's copy holds pool=%s after the rollback; want 10", got)
	}
	if p := deploymentOf(t, ns, "app-primary"); p.Generation != primary.Generation || workload.Revision(p) != idle.Status.StableRevision {
		t.Errorf("the primary changed (generation %d -> %d, revision %s)", primary.Generation, p.Generation, workload.Revision(p))
	}

	verdicts.set(ro, analysis.Outcome{Result: backstopv1.VerdictPass})
	setConfigMapData(t, ns, "app-config", map[string]string{"pool": "10"})
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
}

// TestConfigOptOut: a ConfigMap annotated backstop.dev/config-tracking:
// disabled is shared: the primary reads it directly, no copy is made, the
// revision is the template's hash, and a change to it starts no release.
func TestConfigOptOut(t *testing.T) {
	ns := configEnv(t, readsConfigMap("shared", false), configMap("shared", map[string]string{"region": "eu"},
		map[string]string{backstopv1.ConfigTrackingAnnotation: backstopv1.ConfigTrackingDisabled}))
	ro := configCanary(ns)
	mustCreate(t, ro)
	idle := waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	primary := deploymentOf(t, ns, "app-primary")
	if got, want := refsOf(primary), oneRef(workload.KindConfigMap, "shared"); !reflect.DeepEqual(got, want) {
		t.Errorf("the primary reads %v; want the shared %v", got, want)
	}
	var cms corev1.ConfigMapList
	if err := env.Client.List(context.Background(), &cms, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		if strings.HasPrefix(cm.Name, "app-primary-") {
			t.Errorf("ConfigMap %s: want no copy of the opted-out ConfigMap", cm.Name)
		}
	}
	if want := workload.TemplateHash(deploymentOf(t, ns, "app").Spec.Template); idle.Status.StableRevision != want {
		t.Errorf("stable revision %s; want the template's hash %s", idle.Status.StableRevision, want)
	}

	setConfigMapData(t, ns, "shared", map[string]string{"region": "us"})
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if st := get(t, ro).Status; st.Phase != backstopv1.PhaseIdle || st.StableRevision != idle.Status.StableRevision {
			t.Fatalf("phase %s, stable revision %s after a change to an opted-out ConfigMap; want Idle at %s", st.Phase, st.StableRevision, idle.Status.StableRevision)
		}
		time.Sleep(testenv.Poll)
	}
}

// TestConfigSecretChangeIsReleased: a change to a Secret the target reads
// starts a release (Secrets are polled, not watched), the primary reads
// its copy until the promotion, and the Secret's values appear in no
// status field, annotation, Event or line of the manager's log.
func TestConfigSecretChangeIsReleased(t *testing.T) {
	mark := managerLog.Mark()
	old, next := randomValue(t), randomValue(t)
	ns := configEnv(t, readsSecretKey("db", "password"), secretOf("db", map[string]string{"password": old}))
	ro := configCanary(ns)
	mustCreate(t, ro)
	idle := waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	oldCopy := copyOf(t, deploymentOf(t, ns, "app-primary"), workload.KindSecret, "db")
	var src, cp corev1.Secret
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "db"}, &src); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: oldCopy}, &cp); err != nil {
		t.Fatal(err)
	}
	if string(cp.Data["password"]) != old || cp.Annotations[workload.ConfigKeyAnnotation] != string(src.UID) || cp.Type != src.Type {
		t.Errorf("the copy holds %d bytes of password, key %q, type %s; want the Secret's, keyed with its UID", len(cp.Data["password"]),
			cp.Annotations[workload.ConfigKeyAnnotation], cp.Type)
	}

	// Let the Rollout settle: only the Secret poll can see the change then.
	time.Sleep(2 * time.Second)
	src.StringData = map[string]string{"password": next}
	if err := env.Client.Update(context.Background(), &src); err != nil {
		t.Fatal(err)
	}
	paused := waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	if paused.Status.CanaryRevision == idle.Status.StableRevision {
		t.Errorf("canary revision %s is the stable one", paused.Status.CanaryRevision)
	}
	if got := copyOf(t, deploymentOf(t, ns, "app-primary"), workload.KindSecret, "db"); got != oldCopy {
		t.Errorf("the primary reads %s during the release; want %s", got, oldCopy)
	}
	setGate(t, ro, "promote")
	waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
	newCopy := copyOf(t, deploymentOf(t, ns, "app-primary"), workload.KindSecret, "db")
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: newCopy}, &cp); err != nil || string(cp.Data["password"]) != next {
		t.Errorf("the primary's copy %s does not hold the promoted password (%v)", newCopy, err)
	}
	if exists(t, ns, oldCopy, &corev1.Secret{}) {
		t.Errorf("the old copy %s is still there after the promotion", oldCopy)
	}

	var evs eventsv1.EventList
	if err := env.Client.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	places := map[string]string{
		"the Rollout":         toJSON(t, get(t, ro)),
		"the primary":         toJSON(t, deploymentOf(t, ns, "app-primary")),
		"the Events":          toJSON(t, evs.Items),
		"the manager's log":   managerLog.Since(mark),
		"the target's status": toJSON(t, deploymentOf(t, ns, "app").Status),
	}
	if !strings.Contains(places["the manager's log"], ns) {
		t.Fatalf("the manager's log says nothing of namespace %s: it is not captured", ns)
	}
	for where, text := range places {
		for _, v := range []string{old, next} {
			for _, form := range []string{v, base64.StdEncoding.EncodeToString([]byte(v))} {
				if strings.Contains(text, form) {
					t.Errorf("%s holds a value of the Secret", where)
				}
			}
		}
	}
}

func randomValue(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "pw-" + hex.EncodeToString(b)
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestConfigCopyConflict: an object of the copy's name that Backstop did
// not make is never taken over; the Rollout says why it cannot go on.
func TestConfigCopyConflict(t *testing.T) {
	data := map[string]string{"mode": "v1"}
	name := workload.CopyName(workload.NamesFor(configCanary("")), "app-config", workload.ConfigMapPart(&corev1.ConfigMap{Data: data}))
	ns := configEnv(t, readsConfigMap("app-config", false), configMap("app-config", data, nil), configMap(name, map[string]string{"mine": "yes"}, nil))
	ro := configCanary(ns)
	mustCreate(t, ro)
	got := waitForReady(t, ro, func(c *metav1.Condition) bool { return c.Reason == backstopv1.ReasonActionFailed })
	if want := `ConfigMap ` + name + ` exists and does not belong to Rollout "app"`; got.Status != metav1.ConditionFalse || !strings.Contains(got.Message, want) {
		t.Errorf("Ready = %s %q; want False, saying %q", got.Status, got.Message, want)
	}
	var cm corev1.ConfigMap
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &cm); err != nil {
		t.Fatal(err)
	}
	if len(cm.OwnerReferences) != 0 || !reflect.DeepEqual(cm.Data, map[string]string{"mine": "yes"}) {
		t.Errorf("the foreign ConfigMap was changed: owners %v, data %v", cm.OwnerReferences, cm.Data)
	}
	t.Logf("Ready: %s", got.Message)
}

// TestConfigNoSpuriousRelease: a target that reads no ConfigMap or Secret,
// or only an optional one that does not exist, has its template's hash as
// its revision, exactly as before config tracking, so an upgrade starts no
// release.
func TestConfigNoSpuriousRelease(t *testing.T) {
	for name, edit := range map[string]func(*corev1.PodSpec){
		"no config":                nil,
		"a missing optional one":   readsConfigMap("absent", true),
		"an image pull secret too": func(s *corev1.PodSpec) { s.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}} },
	} {
		t.Run(name, func(t *testing.T) {
			ns := configEnv(t, edit, secretOf("registry", map[string]string{"token": "x"}))
			ro := configCanary(ns)
			mustCreate(t, ro)
			idle := waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
			target, primary := deploymentOf(t, ns, "app"), deploymentOf(t, ns, "app-primary")
			if want := workload.TemplateHash(target.Spec.Template); idle.Status.StableRevision != want || workload.Revision(primary) != want {
				t.Errorf("stable revision %s, primary's %s; want the template's hash %s", idle.Status.StableRevision, workload.Revision(primary), want)
			}
			if !reflect.DeepEqual(refsOf(primary), refsOf(target)) {
				t.Errorf("the primary reads %v, the target %v; want the same", refsOf(primary), refsOf(target))
			}
		})
	}
}

// TestConfigBakeAlertRestoresPreviousConfig: an alert in the bake time
// after a promotion that changed only a ConfigMap restores the data the
// primary read before: the copy it read, kept with the template.
func TestConfigBakeAlertRestoresPreviousConfig(t *testing.T) {
	ns := configEnv(t, readsConfigMap("app-config", false), configMap("app-config", map[string]string{"mode": "v1"}, nil))
	ro := bakeRollout(ns, time.Hour)
	mustCreate(t, ro)
	idle := waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	v1Copy := copyOf(t, deploymentOf(t, ns, "app-primary"), workload.KindConfigMap, "app-config")

	setConfigMapData(t, ns, "app-config", map[string]string{"mode": "v2"})
	done := waitForPhase(t, ro, backstopv1.PhaseSucceeded, -1)
	if done.Status.PreviousStableRevision != idle.Status.StableRevision {
		t.Fatalf("previousStableRevision %q; want %q", done.Status.PreviousStableRevision, idle.Status.StableRevision)
	}
	v2Copy := copyOf(t, deploymentOf(t, ns, "app-primary"), workload.KindConfigMap, "app-config")
	if got := configMapData(t, ns, v2Copy)["mode"]; got != "v2" || v2Copy == v1Copy {
		t.Errorf("the primary reads %s, which holds mode=%s, after the promotion; want a new copy with v2", v2Copy, got)
	}
	if got := configMapData(t, ns, v1Copy)["mode"]; got != "v1" {
		t.Errorf("the kept copy holds mode=%s; want v1", got)
	}
	var cr appsv1.ControllerRevision
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "app-" + idle.Status.StableRevision}, &cr); err != nil {
		t.Fatalf("the v1 template was not kept: %v", err)
	}
	if cr.Annotations[workload.ConfigCopiesAnnotation] != "ConfigMap/app-config="+v1Copy || strings.Contains(string(cr.Data.Raw), v1Copy) {
		t.Errorf("the ControllerRevision: annotations %v, template %s; want the ConfigMap named, and the template as the target has it", cr.Annotations, cr.Data.Raw)
	}

	verdicts.set(ro, analysis.Outcome{Result: backstopv1.VerdictFail, Check: "alerts", Message: "HighErrorRate firing"})
	rolled := waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)
	if got := copyOf(t, deploymentOf(t, ns, "app-primary"), workload.KindConfigMap, "app-config"); got != v1Copy {
		t.Errorf("the primary reads %s after the restore; want the kept %s", got, v1Copy)
	}
	if exists(t, ns, v2Copy, &corev1.ConfigMap{}) {
		t.Errorf("the promoted copy %s is still there after the restore", v2Copy)
	}
	if p := deploymentOf(t, ns, "app-primary"); workload.Revision(p) != idle.Status.StableRevision || rolled.Status.StableRevision != idle.Status.StableRevision {
		t.Errorf("the primary runs %s, stable revision %s after the restore; want %s", workload.Revision(p), rolled.Status.StableRevision, idle.Status.StableRevision)
	}
	verdicts.set(ro, analysis.Outcome{Result: backstopv1.VerdictPass})
	setConfigMapData(t, ns, "app-config", map[string]string{"mode": "v1"})
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
}

// TestConfigRevertWithoutRevisions: with no GitOps source revisions, the
// revert of a release that changed only a ConfigMap finds the commit that
// changed the value in the history, while one that changed only a Secret
// reverts nothing and says so, without the Secret's value.
func TestConfigRevertWithoutRevisions(t *testing.T) {
	srv := gittest.NewServer(t, gittest.Options{Username: "ci", Password: "c1-pass-word"})
	srv.CreateRepo(t, "fleet", "main")
	work := srv.Clone(t, "fleet")
	configYAML := func(mode string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-config\ndata:\n  mode: " + mode + "\n"
	}
	work.Write(t, "apps/app/deployment.yaml", manifest("app:v1"))
	work.Write(t, "apps/app/configmap.yaml", configYAML("calm"))
	work.Commit(t, "Deploy app")
	work.Write(t, "apps/app/configmap.yaml", configYAML("frantic-mode"))
	bad := work.Commit(t, "Make app frantic")
	work.Push(t)

	secretValue := randomValue(t)
	ns := configEnv(t, func(s *corev1.PodSpec) {
		readsConfigMap("app-config", false)(s)
		readsSecretKey("db", "password")(s)
	}, configMap("app-config", map[string]string{"mode": "calm"}, nil), secretOf("db", map[string]string{"password": randomValue(t)}),
		func(ns string) client.Object { return authSecret(ns, "ci", "c1-pass-word") })
	ro := configCanary(ns)
	ro.Spec.Revert = &backstopv1.RevertSpec{Source: &backstopv1.GitSource{
		URL: srv.URL("fleet"), Branch: "main", Path: "apps/app",
		SecretRef: &backstopv1.LocalObjectReference{Name: "fleet-auth"}}}
	reverts.revertForReal(ro, &controllers.GitReverter{Reader: env.Client, Backoff: 100 * time.Millisecond})
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)

	setConfigMapData(t, ns, "app-config", map[string]string{"mode": "frantic-mode"})
	waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	setGate(t, ro, "abort")
	waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)
	st := waitForRevert(t, ro, notPending).Status.Revert
	want := backstopv1.RevertedCommit{Commit: bad, Reason: `apps/app/configmap.yaml: "mode: frantic-mode"`}
	if st.State != backstopv1.RevertPushed || len(st.Reverted) != 1 || st.Reverted[0] != want {
		t.Fatalf("status.revert: %+v; want Pushed, reverting %+v", st, want)
	}
	if got := gittest.Git(t, srv.Dir("fleet"), "show", "main:apps/app/configmap.yaml") + "\n"; got != configYAML("calm") {
		t.Errorf("the ConfigMap after the revert:\n%s", got)
	}

	// Back to calm, then a release of a new password only.
	setConfigMapData(t, ns, "app-config", map[string]string{"mode": "calm"})
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	var sec corev1.Secret
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "db"}, &sec); err != nil {
		t.Fatal(err)
	}
	sec.StringData = map[string]string{"password": secretValue}
	if err := env.Client.Update(context.Background(), &sec); err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, ro, backstopv1.PhasePaused, 1)
	setGate(t, ro, "abort")
	waitForPhase(t, ro, backstopv1.PhaseRolledBack, -1)
	got := waitForRevert(t, ro, func(s backstopv1.RevertState) bool { return s == backstopv1.RevertFailed })
	if msg := got.Status.Revert.Message; !strings.Contains(msg, "nothing is reverted") || strings.Contains(toJSON(t, got), secretValue) {
		t.Errorf("status.revert.message %q; want it to say nothing is reverted, and no Secret value in the Rollout", msg)
	}
}

// TestConfigChangeDuringReleaseRestartsTheCanary: a ConfigMap change while
// the canary runs restarts the release, and the canary's pods, which read
// the replaced data (environment variables never change in a running pod)
// and which the Deployment controller would not replace for a data change,
// are scaled down and up again.
func TestConfigChangeDuringReleaseRestartsTheCanary(t *testing.T) {
	ns := configEnv(t, readsConfigMap("app-config", false), configMap("app-config", map[string]string{"mode": "v1"}, nil))
	ro := configCanary(ns)
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	setConfigMapData(t, ns, "app-config", map[string]string{"mode": "v2"})
	v2 := waitForPhase(t, ro, backstopv1.PhasePaused, 1)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var sizes []int32
	go func() {
		last := int32(-1)
		for ctx.Err() == nil {
			var d appsv1.Deployment
			if env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, &d) == nil && ptr.Deref(d.Spec.Replicas, 1) != last {
				last = ptr.Deref(d.Spec.Replicas, 1)
				mu.Lock()
				sizes = append(sizes, last)
				mu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	before := deploymentOf(t, ns, "app").Generation
	setConfigMapData(t, ns, "app-config", map[string]string{"mode": "v3"})
	testenv.Eventually(t, "the release to restart and pause again", func() bool {
		st := get(t, ro).Status
		return st.CanaryRevision != v2.Status.CanaryRevision && st.Phase == backstopv1.PhasePaused && st.CurrentStep == 1
	})
	cancel()
	target := deploymentOf(t, ns, "app")
	mu.Lock()
	defer mu.Unlock()
	// Each scale write moves the generation: down, then up again.
	if target.Generation < before+2 || ptr.Deref(target.Spec.Replicas, 0) == 0 {
		t.Errorf("the target's generation went %d -> %d with %d replicas (sizes seen %v); want the canary scaled down and up again",
			before, target.Generation, ptr.Deref(target.Spec.Replicas, 0), sizes)
	}
	waitForEvent(t, context.Background(), ro, "Normal", "ReleaseRestarted")
}

// TestConfigDeletedMidReleaseHandsBack: a Rollout deleted during a release
// of a ConfigMap change hands the workload back and goes. The target runs
// the primary's template, which it already runs, reading the ConfigMap
// itself (the primary's copies go with the Rollout), at the primary's size.
func TestConfigDeletedMidReleaseHandsBack(t *testing.T) {
	ns := configEnv(t, readsConfigMap("app-config", false), configMap("app-config", map[string]string{"mode": "v1"}, nil))
	ctx := context.Background()
	ro := configCanary(ns)
	mustCreate(t, ro)
	waitForPhase(t, ro, backstopv1.PhaseIdle, -1)
	setConfigMapData(t, ns, "app-config", map[string]string{"mode": "v2"})
	waitForPhase(t, ro, backstopv1.PhasePaused, 1)

	if err := env.Client.Delete(ctx, ro); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the Rollout to be handed back and gone", func() bool {
		return apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(ro), &backstopv1.Rollout{}))
	})
	target := deploymentOf(t, ns, "app")
	if got, want := refsOf(target), oneRef(workload.KindConfigMap, "app-config"); !reflect.DeepEqual(got, want) {
		t.Errorf("after the hand-back the target reads %v; want %v", got, want)
	}
	primary := deploymentOf(t, ns, "app-primary")
	if got, want := ptr.Deref(target.Spec.Replicas, 0), ptr.Deref(primary.Spec.Replicas, 1); got < want {
		t.Errorf("after the hand-back the target has %d replicas; want at least the primary's %d", got, want)
	}
}
