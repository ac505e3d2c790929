package workload_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/workload"
)

func cmRef(name string) workload.ConfigRef {
	return workload.ConfigRef{Kind: workload.KindConfigMap, Name: name}
}

func secretRef(name string) workload.ConfigRef {
	return workload.ConfigRef{Kind: workload.KindSecret, Name: name}
}

func local(name string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: name} }

// readsEverything reads ConfigMaps and Secrets in every way a pod can.
func readsEverything() corev1.PodSpec {
	return corev1.PodSpec{
		Volumes: []corev1.Volume{
			{Name: "a", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: local("vol-cm")}}},
			{Name: "b", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "vol-secret"}}},
			{Name: "c", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: local("projected-cm")}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: local("projected-secret")}},
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
			}}}},
			{Name: "d", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		},
		InitContainers: []corev1.Container{{Name: "init", Image: "init:1", EnvFrom: []corev1.EnvFromSource{
			{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: local("init-secret")}},
		}}},
		Containers: []corev1.Container{{
			Name: "app", Image: "app:1",
			Env: []corev1.EnvVar{
				{Name: "A", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: local("env-cm"), Key: "a"}}},
				{Name: "B", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: local("env-secret"), Key: "b", Optional: ptr.To(true)}}},
				{Name: "C", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "D", Value: "plain"},
			},
			EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: local("vol-cm")}, Prefix: "X_"}},
		}},
		ImagePullSecrets: []corev1.LocalObjectReference{local("registry")},
	}
}

func TestConfigRefs(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec corev1.PodSpec
		want []workload.ConfigRef
	}{
		{"nothing", corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}, []workload.ConfigRef{}},
		{"every way, sorted and without duplicates; no imagePullSecrets", readsEverything(), []workload.ConfigRef{
			cmRef("env-cm"), cmRef("projected-cm"), cmRef("vol-cm"),
			secretRef("env-secret"), secretRef("init-secret"), secretRef("projected-secret"), secretRef("vol-secret"),
		}},
		{"a ConfigMap and a Secret of the same name", corev1.PodSpec{
			Volumes: []corev1.Volume{
				{Name: "a", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: local("app")}}},
				{Name: "b", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "app"}}},
			},
			Containers: []corev1.Container{{Name: "app", Image: "app:1"}},
		}, []workload.ConfigRef{cmRef("app"), secretRef("app")}},
		{"an empty name is no ref", corev1.PodSpec{
			Volumes:    []corev1.Volume{{Name: "a", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{}}}},
			Containers: []corev1.Container{{Name: "app", Image: "app:1"}},
		}, []workload.ConfigRef{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := corev1.PodTemplateSpec{Spec: tc.spec}
			before := tmpl.DeepCopy()
			if got := workload.ConfigRefs(tmpl); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ConfigRefs = %v, want %v", got, tc.want)
			}
			if !reflect.DeepEqual(before, &tmpl) {
				t.Errorf("ConfigRefs changed the template")
			}
		})
	}
}

func TestRevisionWithConfigs(t *testing.T) {
	if got := workload.CombineRevision("0123456789", ""); got != "0123456789" {
		t.Errorf("CombineRevision without configs = %s, want the template hash", got)
	}
	a, b := workload.CombineRevision("0123456789", "aa"), workload.CombineRevision("0123456789", "bb")
	if a == b || len(a) != 10 || a == "0123456789" {
		t.Errorf("CombineRevision: %s and %s for two digests; want two different 10-character revisions", a, b)
	}
	if d := (workload.Tracked{}).Digest(); d != "" {
		t.Errorf("the digest of nothing tracked is %q, want empty", d)
	}

	s := &corev1.Secret{Data: map[string][]byte{"pin": []byte("1234")}}
	if workload.SecretPart(s, "uid-1") == workload.SecretPart(s, "uid-2") {
		t.Errorf("a Secret's part does not depend on its key: anyone could try the likely values")
	}
	if workload.SecretPart(s, "uid-1") != workload.SecretPart(s.DeepCopy(), "uid-1") {
		t.Errorf("a Secret's part is not stable")
	}
	cm1 := &corev1.ConfigMap{Data: map[string]string{"a": "1", "b": "2"}}
	cm2 := &corev1.ConfigMap{Data: map[string]string{"b": "2", "a": "1"}}
	cm3 := &corev1.ConfigMap{Data: map[string]string{"a": "1"}, BinaryData: map[string][]byte{"b": []byte("2")}}
	if workload.ConfigMapPart(cm1) != workload.ConfigMapPart(cm2) || workload.ConfigMapPart(cm1) == workload.ConfigMapPart(cm3) {
		t.Errorf("ConfigMapPart: want the same data to digest the same, and binaryData to count apart from data")
	}
}

// TestPrimaryReadsCopies: the primary's template reads the copies of the
// tracked configs, and hashes as the target's template does.
func TestPrimaryReadsCopies(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	ro, tgt := rollout(ns), target(ns)
	tgt.Spec.Template.Spec.Volumes = readsEverything().Volumes
	tgt.Spec.Template.Spec.Containers[0].EnvFrom = readsEverything().Containers[0].EnvFrom
	create(t, ro, tgt)
	tracked := workload.Tracked{
		{ConfigRef: cmRef("projected-cm"), Part: "aaaaaaaaaaaaaaaa"},
		{ConfigRef: cmRef("vol-cm"), Part: "bbbbbbbbbbbbbbbb"},
		{ConfigRef: secretRef("vol-secret"), Part: "cccccccccccccccc"},
	}
	pc := tracked.Primary(workload.NamesFor(ro))
	p, _, err := workload.EnsurePrimary(ctx, env.Client, ro, tgt, tgt.Spec.Template, 1, pc)
	if err != nil {
		t.Fatal(err)
	}
	want := []workload.ConfigRef{cmRef("web-primary-projected-cm-aaaaaaaaaa"), cmRef("web-primary-vol-cm-bbbbbbbbbb"),
		secretRef("projected-secret"), secretRef("web-primary-vol-secret-cccccccccc")}
	if got := workload.ConfigRefs(p.Spec.Template); !reflect.DeepEqual(got, want) {
		t.Errorf("the primary reads %v, want %v", got, want)
	}
	if workload.TemplateHash(p.Spec.Template) != workload.TemplateHash(tgt.Spec.Template) {
		t.Errorf("the primary's template hashes %s, the target's %s; want the same", workload.TemplateHash(p.Spec.Template), workload.TemplateHash(tgt.Spec.Template))
	}
	rev := workload.CombineRevision(workload.TemplateHash(tgt.Spec.Template), tracked.Digest())
	if workload.Revision(p) != rev || p.Annotations[workload.TemplateHashAnnotation] != rev {
		t.Errorf("the primary's revision %s, annotation %s; want %s", workload.Revision(p), p.Annotations[workload.TemplateHashAnnotation], rev)
	}
	if got := workload.PrimaryConfigsOf(p.Spec.Template); !reflect.DeepEqual(got, pc) {
		t.Errorf("PrimaryConfigsOf = %+v, want %+v", got, pc)
	}
	// The primary's template given back (a restore) is renamed once only.
	again, changed, err := workload.EnsurePrimary(ctx, env.Client, ro, tgt, p.Spec.Template, 1, pc)
	if err != nil || changed || !reflect.DeepEqual(workload.ConfigRefs(again.Spec.Template), want) {
		t.Errorf("EnsurePrimary with the primary's own template: changed=%v err=%v refs %v", changed, err, workload.ConfigRefs(again.Spec.Template))
	}
	// Without configs, the primary reads what the target reads.
	p, _, err = workload.EnsurePrimary(ctx, env.Client, ro, tgt, p.Spec.Template, 1, workload.PrimaryConfigs{})
	if err != nil || !reflect.DeepEqual(workload.ConfigRefs(p.Spec.Template), workload.ConfigRefs(tgt.Spec.Template)) ||
		workload.Revision(p) != workload.TemplateHash(tgt.Spec.Template) {
		t.Errorf("EnsurePrimary without configs: err=%v refs %v revision %s", err, workload.ConfigRefs(p.Spec.Template), workload.Revision(p))
	}
}

// TestConfigCopies: the copies belong to the Rollout, are named after the
// data they hold and never written again, and never take over an object of
// their name.
func TestConfigCopies(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	ro := rollout(ns)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cfg"}, Data: map[string]string{"mode": "v1"}}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"pw": []byte("one")}}
	out := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shared",
		Annotations: map[string]string{backstopv1.ConfigTrackingAnnotation: backstopv1.ConfigTrackingDisabled}}}
	token := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "token",
		Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}}, Type: corev1.SecretTypeServiceAccountToken}
	create(t, ro, cm, sec, out, token)
	refs := []workload.ConfigRef{cmRef("cfg"), cmRef("missing"), cmRef("shared"), secretRef("db"), secretRef("token")}

	sources, tracked, err := workload.ReadSources(ctx, env.Client, ns, refs)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tracked.Refs(), []workload.ConfigRef{cmRef("cfg"), secretRef("db")}; !reflect.DeepEqual(got, want) {
		t.Fatalf("tracked %v, want %v: not the missing, opted-out or service account token ones", got, want)
	}
	reader := &workload.ConfigReader{Uncached: env.Client}
	for i := 0; i < 2; i++ { // the second time from what it kept
		if got, err := reader.Read(ctx, ns, refs); err != nil || !reflect.DeepEqual(got, tracked) {
			t.Errorf("ConfigReader.Read = %v, %v; want %v", got, err, tracked)
		}
	}

	pc, err := workload.EnsureCopies(ctx, env.Client, env.Client, ro, sources)
	if err != nil || !reflect.DeepEqual(pc, tracked.Primary(workload.NamesFor(ro))) {
		t.Fatalf("EnsureCopies = %+v, %v; want %+v", pc, err, tracked.Primary(workload.NamesFor(ro)))
	}
	cmName, secName := pc.Copies[0].Copy, pc.Copies[1].Copy
	if cmName != "web-primary-cfg-"+tracked[0].Part[:10] || secName != "web-primary-db-"+tracked[1].Part[:10] {
		t.Errorf("copies named %s and %s; want them named after their data", cmName, secName)
	}
	var cmCopy corev1.ConfigMap
	var secCopy corev1.Secret
	get(t, ns, cmName, &cmCopy)
	get(t, ns, secName, &secCopy)
	assertControlledBy(t, &cmCopy, ro)
	assertControlledBy(t, &secCopy, ro)
	if cmCopy.Data["mode"] != "v1" || string(secCopy.Data["pw"]) != "one" || secCopy.Annotations[workload.ConfigKeyAnnotation] != string(sources[1].GetUID()) ||
		!ptr.Deref(cmCopy.Immutable, false) || !ptr.Deref(secCopy.Immutable, false) || secCopy.Type != corev1.SecretTypeOpaque {
		t.Errorf("copies hold %v and %d bytes keyed %q, immutable %v and %v", cmCopy.Data, len(secCopy.Data["pw"]),
			secCopy.Annotations[workload.ConfigKeyAnnotation], cmCopy.Immutable, secCopy.Immutable)
	}
	if _, err := workload.EnsureCopies(ctx, env.Client, env.Client, ro, sources); err != nil {
		t.Fatal(err)
	}
	var same corev1.ConfigMap
	get(t, ns, cmName, &same)
	if same.ResourceVersion != cmCopy.ResourceVersion {
		t.Errorf("a copy that holds the data was written again")
	}
	if err := workload.VerifyCopies(ctx, env.Client, ro, pc); err != nil {
		t.Errorf("VerifyCopies: %v", err)
	}
	if err := workload.VerifyCopies(ctx, env.Client, ro, workload.PrimaryConfigs{Copies: pc.Copies, Digest: "other"}); err == nil {
		t.Errorf("VerifyCopies of another digest: no error")
	}

	// New data makes new copies; the old ones stay until deleted.
	cm.Data = map[string]string{"mode": "v2"}
	if err := env.Client.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	sources2, _, err := workload.ReadSources(ctx, env.Client, ns, refs)
	if err != nil {
		t.Fatal(err)
	}
	pc2, err := workload.EnsureCopies(ctx, env.Client, env.Client, ro, sources2)
	if err != nil {
		t.Fatal(err)
	}
	if pc2.Copies[0].Copy == cmName || pc2.Copies[1].Copy != secName || configData(t, ns, pc2.Copies[0].Copy) != "v2" || configData(t, ns, cmName) != "v1" {
		t.Errorf("after a change of the ConfigMap the copies are %+v; want a new copy of it only, the old one unchanged", pc2.Copies)
	}
	if err := workload.DeleteCopies(ctx, env.Client, env.Client, ro, []workload.ConfigRef{cmRef(cmName)}); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: cmName}, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Errorf("the copy after DeleteCopies: %v, want NotFound", err)
	}
	if err := workload.VerifyCopies(ctx, env.Client, ro, pc); err == nil {
		t.Errorf("VerifyCopies with a copy missing: no error")
	}

	// Never over an object of someone else, never deleting it.
	sec2 := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db2"}, Data: map[string][]byte{"pw": []byte("two")}}
	create(t, sec2)
	_, tracked2, err := workload.ReadSources(ctx, env.Client, ns, []workload.ConfigRef{secretRef("db2")})
	if err != nil {
		t.Fatal(err)
	}
	foreignName := tracked2.Primary(workload.NamesFor(ro)).Copies[0].Copy
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: foreignName}, Data: map[string][]byte{"x": []byte("y")}}
	create(t, foreign)
	var conflict *workload.CopyConflictError
	if _, err := workload.EnsureCopies(ctx, env.Client, env.Client, ro, []client.Object{sec2}); !errors.As(err, &conflict) {
		t.Errorf("EnsureCopies over a foreign Secret: %v, want a CopyConflictError", err)
	}
	if err := workload.DeleteCopies(ctx, env.Client, env.Client, ro, []workload.ConfigRef{secretRef(foreignName)}); err != nil {
		t.Fatal(err)
	}
	var still corev1.Secret
	get(t, ns, foreignName, &still)
	if string(still.Data["x"]) != "y" || len(still.OwnerReferences) != 0 {
		t.Errorf("the foreign Secret was changed")
	}
}

func configData(t *testing.T, ns, name string) string {
	t.Helper()
	var cm corev1.ConfigMap
	get(t, ns, name, &cm)
	return cm.Data["mode"]
}

// TestSaveRevisionKeepsConfigNames: a kept template records the names and
// digest of the configs it read through copies, and gives them back.
func TestSaveRevisionKeepsConfigNames(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	ro, tgt := rollout(ns), target(ns)
	tgt.Spec.Template.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: local("cfg")}}}
	create(t, ro, tgt)
	pc := workload.Tracked{{ConfigRef: cmRef("cfg"), Part: "0123456789abcdef"}}.Primary(workload.NamesFor(ro))
	p, _, err := workload.EnsurePrimary(ctx, env.Client, ro, tgt, tgt.Spec.Template, 1, pc)
	if err != nil {
		t.Fatal(err)
	}
	if err := workload.SaveRevision(ctx, env.Client, ro, p.Spec.Template); err != nil {
		t.Fatal(err)
	}
	tmpl, got, err := workload.RevisionTemplate(ctx, env.Client, ro, workload.Revision(p))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, pc) || !reflect.DeepEqual(workload.ConfigRefs(tmpl), pc.Refs()) {
		t.Errorf("RevisionTemplate: configs %+v, template reads %v; want %+v, as the target has it", got, workload.ConfigRefs(tmpl), pc)
	}
	var d appsv1.Deployment
	get(t, ns, "web-primary", &d)
	if workload.Revision(&d) != workload.Revision(p) {
		t.Errorf("revision %s, want %s", workload.Revision(&d), workload.Revision(p))
	}
}
