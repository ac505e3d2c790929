package workload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// The templates the primary ran are kept as apps/v1 ControllerRevisions, so
// that a promoted version can be replaced by the one before it during the
// bake time (spec.analysis.alerts.bakeTime) after its promotion. Each is
// named <rollout>-<revision>, labelled RolloutLabel, controlled by the
// Rollout (so Kubernetes deletes it with the Rollout), and holds the pod
// template as JSON, as the target's template would carry it (without what
// Backstop writes into the primary's). Of the ConfigMaps and Secrets the
// template read through copies it keeps only the names of the copies and
// their digest (ConfigCopiesAnnotation, ConfigDigestAnnotation), never their
// data: the copies themselves are kept while a kept template names them
// (see RevisionCopies).

const (
	// RolloutLabel on the ControllerRevisions of a Rollout carries the
	// Rollout's name (see RolloutLabelValue).
	RolloutLabel = AnnotationPrefix + "rollout"

	// KeptRevisions is how many saved templates PruneRevisions keeps per
	// Rollout.
	KeptRevisions = 3

	// labelValueMaxLength is the length limit of a label value.
	labelValueMaxLength = 63
)

// RevisionName is the name of the ControllerRevision that holds ro's template
// of revision: <rollout>-<revision>. A Rollout name too long for that is cut,
// and a hash of the whole name keeps the result unique.
func RevisionName(ro *backstopv1.Rollout, revision string) string {
	return fitName(ro.Name, "-"+revision, validation.DNS1123SubdomainMaxLength)
}

// RolloutLabelValue is the value of RolloutLabel for ro: its name, or, for a
// name longer than a label value may be, a cut of it with a hash of the
// whole name.
func RolloutLabelValue(ro *backstopv1.Rollout) string {
	return fitName(ro.Name, "", labelValueMaxLength)
}

// fitName returns name+suffix when it fits in limit characters, and
// otherwise a prefix of name, a hash of name and suffix.
func fitName(name, suffix string, limit int) string {
	if len(name)+len(suffix) <= limit {
		return name + suffix
	}
	sum := sha256.Sum256([]byte(name))
	hash := "-" + hex.EncodeToString(sum[:4])
	cut := max(limit-len(hash)-len(suffix), 0)
	// A cut name must still end with an alphanumeric character.
	return strings.TrimRight(name[:min(cut, len(name))], "-.") + hash + suffix
}

// SaveRevision keeps tmpl, a template the primary runs, as a ControllerRevision
// of ro, so RevisionTemplate can return it later. It is idempotent: a saved
// template is left as it is. Its revision is the revision of the primary
// that runs tmpl (see Revision); pass the template as the API server stored
// it, so that the revision is the one the Rollout's status records.
func SaveRevision(ctx context.Context, c client.Client, ro *backstopv1.Rollout, tmpl corev1.PodTemplateSpec) error {
	revision := templateRevision(tmpl)
	pc := PrimaryConfigsOf(tmpl)
	name := RevisionName(ro, revision)
	var cur appsv1.ControllerRevision
	err := c.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: name}, &cur)
	if err == nil {
		return checkRevision(ro, &cur, revision)
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading controllerrevision %s/%s: %w", ro.Namespace, name, err)
	}
	saved, err := listRevisions(ctx, c, ro)
	if err != nil {
		return err
	}
	number := int64(1)
	if len(saved) > 0 {
		number = saved[0].Revision + 1
	}
	data, err := json.Marshal(normalize(tmpl))
	if err != nil {
		return fmt.Errorf("marshalling the template of revision %s: %w", revision, err)
	}
	cr := &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   ro.Namespace,
			Name:        name,
			Labels:      map[string]string{RolloutLabel: RolloutLabelValue(ro)},
			Annotations: map[string]string{TemplateHashAnnotation: revision},
		},
		Data:     runtime.RawExtension{Raw: data},
		Revision: number,
	}
	if len(pc.Copies) > 0 {
		cr.Annotations[ConfigCopiesAnnotation] = formatCopies(pc.Copies)
		cr.Annotations[ConfigDigestAnnotation] = pc.Digest
	}
	if err := own(c, ro, cr); err != nil {
		return err
	}
	err = c.Create(ctx, cr)
	if apierrors.IsAlreadyExists(err) {
		// Saved meanwhile (by another manager, or through a stale read).
		if err := c.Get(ctx, client.ObjectKeyFromObject(cr), &cur); err != nil {
			return fmt.Errorf("reading controllerrevision %s/%s: %w", ro.Namespace, name, err)
		}
		return checkRevision(ro, &cur, revision)
	}
	if err != nil {
		return fmt.Errorf("creating controllerrevision %s/%s: %w", ro.Namespace, name, err)
	}
	return nil
}

// checkRevision says whether cr holds ro's template of revision.
func checkRevision(ro *backstopv1.Rollout, cr *appsv1.ControllerRevision, revision string) error {
	if !ownedBy(ro, cr) {
		return fmt.Errorf("controllerrevision %s/%s does not belong to Rollout %q", cr.Namespace, cr.Name, ro.Name)
	}
	if got := cr.Annotations[TemplateHashAnnotation]; got != revision {
		return fmt.Errorf("controllerrevision %s/%s holds revision %q, not %q", cr.Namespace, cr.Name, got, revision)
	}
	return nil
}

// RevisionTemplate returns ro's template of revision, as SaveRevision kept
// it, and the configs it read through copies. When none was kept, the error
// says so and apierrors.IsNotFound recognises it.
func RevisionTemplate(ctx context.Context, c client.Reader, ro *backstopv1.Rollout, revision string) (corev1.PodTemplateSpec, PrimaryConfigs, error) {
	name := RevisionName(ro, revision)
	var cr appsv1.ControllerRevision
	if err := c.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: name}, &cr); err != nil {
		if apierrors.IsNotFound(err) {
			return corev1.PodTemplateSpec{}, PrimaryConfigs{}, fmt.Errorf("the template of revision %s was not kept (controllerrevision %s/%s): %w", revision, ro.Namespace, name, err)
		}
		return corev1.PodTemplateSpec{}, PrimaryConfigs{}, fmt.Errorf("reading controllerrevision %s/%s: %w", ro.Namespace, name, err)
	}
	if err := checkRevision(ro, &cr, revision); err != nil {
		return corev1.PodTemplateSpec{}, PrimaryConfigs{}, err
	}
	var tmpl corev1.PodTemplateSpec
	if err := json.Unmarshal(cr.Data.Raw, &tmpl); err != nil {
		return corev1.PodTemplateSpec{}, PrimaryConfigs{}, fmt.Errorf("controllerrevision %s/%s does not hold a pod template: %w", cr.Namespace, cr.Name, err)
	}
	pc := PrimaryConfigs{Copies: parseCopies(cr.Annotations[ConfigCopiesAnnotation]), Digest: cr.Annotations[ConfigDigestAnnotation]}
	if got := CombineRevision(TemplateHash(tmpl), pc.Digest); got != revision {
		return corev1.PodTemplateSpec{}, PrimaryConfigs{}, fmt.Errorf("controllerrevision %s/%s holds a template of revision %s, not %s", cr.Namespace, cr.Name, got, revision)
	}
	return tmpl, pc, nil
}

// RevisionCopies lists the copies of ConfigMaps and Secrets that the
// templates kept for ro read, as refs of the copies.
func RevisionCopies(ctx context.Context, c client.Reader, ro *backstopv1.Rollout) ([]ConfigRef, error) {
	saved, err := listRevisions(ctx, c, ro)
	if err != nil {
		return nil, err
	}
	var out []ConfigRef
	for i := range saved {
		for _, cp := range parseCopies(saved[i].Annotations[ConfigCopiesAnnotation]) {
			out = append(out, cp.CopyRef())
		}
	}
	return out, nil
}

// PruneRevisions deletes the saved templates of ro but the KeptRevisions
// newest and those of the revisions in keep.
func PruneRevisions(ctx context.Context, c client.Client, ro *backstopv1.Rollout, keep ...string) error {
	saved, err := listRevisions(ctx, c, ro)
	if err != nil {
		return err
	}
	for i := range saved {
		cr := &saved[i]
		if i < KeptRevisions || slices.Contains(keep, cr.Annotations[TemplateHashAnnotation]) {
			continue
		}
		if err := c.Delete(ctx, cr, client.Preconditions{UID: &cr.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting controllerrevision %s/%s: %w", cr.Namespace, cr.Name, err)
		}
	}
	return nil
}

// listRevisions returns the saved templates of ro, newest first.
func listRevisions(ctx context.Context, c client.Reader, ro *backstopv1.Rollout) ([]appsv1.ControllerRevision, error) {
	var list appsv1.ControllerRevisionList
	if err := c.List(ctx, &list, client.InNamespace(ro.Namespace), client.MatchingLabels{RolloutLabel: RolloutLabelValue(ro)}); err != nil {
		return nil, fmt.Errorf("listing the controllerrevisions of Rollout %s/%s: %w", ro.Namespace, ro.Name, err)
	}
	saved := list.Items[:0]
	for _, cr := range list.Items {
		if ownedBy(ro, &cr) {
			saved = append(saved, cr)
		}
	}
	sort.SliceStable(saved, func(i, j int) bool {
		a, b := &saved[i], &saved[j]
		if a.Revision != b.Revision {
			return a.Revision > b.Revision
		}
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return b.CreationTimestamp.Before(&a.CreationTimestamp)
		}
		return a.Name > b.Name
	})
	return saved, nil
}
