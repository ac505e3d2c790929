package workload

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// The copies of the configs a primary reads. Each is named after its data
// (CopyName), made immutable and never written again: a promotion makes new
// copies and points the primary's template at them, so the primary's old
// pods keep reading the old copies until the Deployment replaces them, and
// a restore in the bake time points it back at the copies its kept
// template names. Each copy belongs to its Rollout (controller owner
// reference, so Kubernetes deletes it with the Rollout), carries the labels
// LabelManagedBy=ManagedBy and LabelRollout, and names in
// ConfigSourceAnnotation the config it copies. Backstop writes an object of
// a copy's name only when its Rollout controls it: an object of that name
// that someone else made is an error, never taken over. Copies and sources
// are read without the cache: Secrets are never cached, and the ConfigMaps'
// cache holds metadata only.

// CopyConflictError says an object of a copy's name does not belong to
// the Rollout.
type CopyConflictError struct {
	// Kind and Name of the object in the way.
	Kind ConfigKind
	Name string
	// Source is the name of the config it would copy.
	Source string
	// Rollout is the Rollout's name.
	Rollout string
}

// Error implements error.
func (e *CopyConflictError) Error() string {
	return fmt.Sprintf("%s %s exists and does not belong to Rollout %q, so it cannot hold the primary's copy of %s %s: rename or delete it, or opt %s %s out with the annotation %s: %s",
		e.Kind, e.Name, e.Rollout, e.Kind, e.Source, e.Kind, e.Source, backstopv1.ConfigTrackingAnnotation, backstopv1.ConfigTrackingDisabled)
}

// EnsureCopies makes the primary's copy of each of sources (as
// ReadSources returns them) and returns what the primary records of them.
// A copy that exists already is checked to hold its source's data.
func EnsureCopies(ctx context.Context, c client.Client, uncached client.Reader, ro *backstopv1.Rollout, sources []client.Object) (PrimaryConfigs, error) {
	n := NamesFor(ro)
	var tracked Tracked
	for _, src := range sources {
		ref := refOf(src)
		part, _ := sourcePart(src)
		written, err := ensureCopy(ctx, c, uncached, ro, ref, src, CopyName(n, ref.Name, part))
		if err != nil {
			return PrimaryConfigs{}, err
		}
		if got := copyPart(written); got != part {
			return PrimaryConfigs{}, fmt.Errorf("%s %s/%s holds other data than %s %s", ref.Kind, ro.Namespace, written.GetName(), ref.Kind, ref.Name)
		}
		tracked = append(tracked, TrackedConfig{ConfigRef: ref, Part: part})
	}
	return tracked.Primary(n), nil
}

// VerifyCopies checks that the copies of pc exist, belong to ro and hold
// the data of pc.Digest, as a restore needs them.
func VerifyCopies(ctx context.Context, uncached client.Reader, ro *backstopv1.Rollout, pc PrimaryConfigs) error {
	var got Tracked
	for _, cp := range pc.Copies {
		obj, found, err := readConfig(ctx, uncached, ro.Namespace, cp.CopyRef())
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%s %s/%s, the copy of %s %s, is missing", cp.Kind, ro.Namespace, cp.Copy, cp.Kind, cp.Name)
		}
		if !ownedBy(ro, obj) {
			return &CopyConflictError{Kind: cp.Kind, Name: cp.Copy, Source: cp.Name, Rollout: ro.Name}
		}
		got = append(got, TrackedConfig{ConfigRef: cp.ConfigRef, Part: copyPart(obj)})
	}
	if got.Digest() != pc.Digest {
		return fmt.Errorf("the copies %s hold other data than they did (digest %s, not %s)", formatCopies(pc.Copies), got.Digest(), pc.Digest)
	}
	return nil
}

// DeleteCopies deletes the copies in copies (refs of copies, not of their
// sources) that belong to ro. An object of a copy's name that does not
// belong to ro is left alone.
func DeleteCopies(ctx context.Context, c client.Client, uncached client.Reader, ro *backstopv1.Rollout, copies []ConfigRef) error {
	for _, ref := range copies {
		obj, found, err := readConfig(ctx, uncached, ro.Namespace, ref)
		if err != nil {
			return err
		}
		if !found || !ownedBy(ro, obj) {
			continue
		}
		uid := obj.GetUID()
		if err := c.Delete(ctx, obj, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting %s %s/%s: %w", ref.Kind, ro.Namespace, ref.Name, err)
		}
	}
	return nil
}

// copyPart is the digest of a copy's data, keyed for a Secret with the
// key it carries.
func copyPart(obj client.Object) string {
	switch o := obj.(type) {
	case *corev1.Secret:
		return SecretPart(o, o.Annotations[ConfigKeyAnnotation])
	case *corev1.ConfigMap:
		return ConfigMapPart(o)
	}
	return ""
}

func refOf(obj client.Object) ConfigRef {
	if _, ok := obj.(*corev1.Secret); ok {
		return ConfigRef{Kind: KindSecret, Name: obj.GetName()}
	}
	return ConfigRef{Kind: KindConfigMap, Name: obj.GetName()}
}

// ensureCopy makes the object name, of ref's kind, an immutable copy of
// from's data that belongs to ro, and returns it as stored. A copy that
// exists is left as it is: its name says what it holds, and the caller
// checks that it does.
func ensureCopy(ctx context.Context, c client.Client, uncached client.Reader, ro *backstopv1.Rollout, ref ConfigRef, from client.Object, name string) (client.Object, error) {
	cur, found, err := readConfig(ctx, uncached, ro.Namespace, ConfigRef{Kind: ref.Kind, Name: name})
	if err != nil {
		return nil, err
	}
	if found {
		if !ownedBy(ro, cur) {
			return nil, &CopyConflictError{Kind: ref.Kind, Name: name, Source: ref.Name, Rollout: ro.Name}
		}
		return cur, nil
	}
	want := copyOf(ro, ref, from, name)
	if err := own(c, ro, want); err != nil {
		return nil, err
	}
	if err := c.Create(ctx, want); err != nil {
		return nil, fmt.Errorf("creating %s %s/%s: %w", ref.Kind, ro.Namespace, name, err)
	}
	return want, nil
}

// copyOf is the copy named name of from's data.
func copyOf(ro *backstopv1.Rollout, ref ConfigRef, from client.Object, name string) client.Object {
	om := metav1.ObjectMeta{
		Namespace: ro.Namespace,
		Name:      name,
		Labels: map[string]string{
			backstopv1.LabelManagedBy: backstopv1.ManagedBy,
			RolloutLabel:              RolloutLabelValue(ro),
		},
		Annotations: map[string]string{ConfigSourceAnnotation: ref.Name},
	}
	switch f := from.(type) {
	case *corev1.Secret:
		om.Annotations[ConfigKeyAnnotation] = string(f.UID)
		return &corev1.Secret{ObjectMeta: om, Type: f.Type, Data: maps.Clone(f.Data), Immutable: ptr.To(true)}
	case *corev1.ConfigMap:
		return &corev1.ConfigMap{ObjectMeta: om, Data: maps.Clone(f.Data), BinaryData: maps.Clone(f.BinaryData), Immutable: ptr.To(true)}
	}
	panic(fmt.Sprintf("copying a %T", from))
}
