package workload

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// Revision is the revision a primary Deployment runs: the TemplateHash of
// its pod template as stored, combined with the digest of the configs it
// reads through copies that its template records (CombineRevision; the
// TemplateHash alone when it reads none). The target's revision combines
// its TemplateHash with the digest of the configs it reads as they are now
// (ConfigReader); the target and the primary run the same version exactly
// when their revisions are equal.
func Revision(d *appsv1.Deployment) string {
	return templateRevision(d.Spec.Template)
}

// templateRevision is the revision of a primary's pod template (see
// Revision).
func templateRevision(tmpl corev1.PodTemplateSpec) string {
	return CombineRevision(TemplateHash(tmpl), tmpl.Annotations[ConfigDigestAnnotation])
}

// EnsurePrimary creates or updates the primary Deployment of ro
// (<target>-primary) so that it runs tmpl with the given replicas:
//   - its selector is the target's, with PrimarySuffix added to each
//     matchLabels value, and tmpl's labels are rewritten to match, so the
//     primary's and the target's pods never overlap;
//   - the refs of tmpl to the configs of pc read their copies instead, and
//     the template records the rename and pc.Digest (ConfigCopiesAnnotation,
//     ConfigDigestAnnotation), so a change of the configs' data alone rolls
//     the primary's pods; the caller makes the copies first (EnsureCopies);
//   - TemplateHashAnnotation records its revision (Revision), the
//     TemplateHash of tmpl combined with pc.Digest;
//   - strategy, minReadySeconds, revisionHistoryLimit and
//     progressDeadlineSeconds are copied from the target;
//   - ro is its controller owner.
//
// The target's metadata labels are deliberately not copied: they typically
// carry the GitOps tool's ownership labels, which would make Flux or Argo CD
// prune the primary.
//
// TemplateHashAnnotation records the hash of the template as stored, so it
// equals Revision(target) when tmpl is the target's template, even if tmpl
// was built in code without the server's defaults (a dry run tells the
// stored form). EnsurePrimary writes only when something differs and reports
// whether it wrote; it reads and compares first, so a steady state costs one
// read when tmpl comes from the server.
func EnsurePrimary(ctx context.Context, c client.Client, ro *backstopv1.Rollout, target *appsv1.Deployment,
	tmpl corev1.PodTemplateSpec, replicas int32, pc PrimaryConfigs) (*appsv1.Deployment, bool, error) {
	names := NamesFor(ro)
	sel, err := primarySelector(target.Spec.Selector)
	if err != nil {
		return nil, false, fmt.Errorf("deployment %s/%s: %w", target.Namespace, target.Name, err)
	}
	var cur appsv1.Deployment
	err = c.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: names.Primary}, &cur)
	if apierrors.IsNotFound(err) {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: names.Primary}}
		d.Spec.Selector = sel
		setPrimarySpec(d, target, tmpl, replicas, pc)
		if err := own(c, ro, d); err != nil {
			return nil, false, err
		}
		if err := recordStoredHash(ctx, c, d, false); err != nil {
			return nil, false, err
		}
		if err := c.Create(ctx, d); err != nil {
			return nil, false, fmt.Errorf("creating deployment %s/%s: %w", d.Namespace, d.Name, err)
		}
		return d, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading deployment %s/%s: %w", ro.Namespace, names.Primary, err)
	}
	if !equality.Semantic.DeepEqual(cur.Spec.Selector, sel) {
		return nil, false, fmt.Errorf("deployment %s/%s selects %s but the target now needs %s, and a selector cannot change: delete the primary to have it recreated",
			cur.Namespace, cur.Name, metav1.FormatLabelSelector(cur.Spec.Selector), metav1.FormatLabelSelector(sel))
	}
	want := cur.DeepCopy()
	setPrimarySpec(want, target, tmpl, replicas, pc)
	if err := own(c, ro, want); err != nil {
		return nil, false, err
	}
	if equality.Semantic.DeepEqual(&cur, want) {
		return &cur, false, nil
	}
	if err := recordStoredHash(ctx, c, want, true); err != nil {
		return nil, false, err
	}
	if err := c.Update(ctx, want); err != nil {
		return nil, false, fmt.Errorf("updating deployment %s/%s: %w", want.Namespace, want.Name, err)
	}
	// The API server does not store an update that changes nothing (for
	// example when tmpl only lacked defaults the stored template has).
	return want, want.ResourceVersion != cur.ResourceVersion, nil
}

// recordStoredHash sets TemplateHashAnnotation on d to the hash of d's
// template as the API server would store it, learnt from a dry run: a
// template built in code lacks the defaults the server fills in, and its
// hash would never match the target's.
func recordStoredHash(ctx context.Context, c client.Client, d *appsv1.Deployment, exists bool) error {
	dry := d.DeepCopy()
	var err error
	if exists {
		err = c.Update(ctx, dry, client.DryRunAll)
	} else {
		err = c.Create(ctx, dry, client.DryRunAll)
	}
	if err != nil {
		return fmt.Errorf("dry-run writing deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	d.Annotations[TemplateHashAnnotation] = Revision(dry)
	return nil
}

// setPrimarySpec sets the fields of d that EnsurePrimary owns, except the
// selector (immutable, set at creation).
func setPrimarySpec(d *appsv1.Deployment, target *appsv1.Deployment, tmpl corev1.PodTemplateSpec, replicas int32, pc PrimaryConfigs) {
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	d.Annotations[TemplateHashAnnotation] = CombineRevision(TemplateHash(tmpl), pc.Digest)
	d.Spec.Replicas = ptr.To(replicas)
	d.Spec.Template = primaryTemplate(tmpl, d.Spec.Selector)
	renameToCopies(&d.Spec.Template, pc)
	d.Spec.Strategy = *target.Spec.Strategy.DeepCopy()
	d.Spec.MinReadySeconds = target.Spec.MinReadySeconds
	d.Spec.RevisionHistoryLimit = copyPtr(target.Spec.RevisionHistoryLimit)
	d.Spec.ProgressDeadlineSeconds = copyPtr(target.Spec.ProgressDeadlineSeconds)
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
