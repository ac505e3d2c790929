package workload

import (
	"context"
	"errors"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// The copies of the configs a primary reads. Each belongs to its Rollout
// (controller owner reference, so Kubernetes deletes it with the Rollout),
// carries the labels LabelManagedBy=ManagedBy and LabelRollout, and names
// in ConfigSourceAnnotation the config it copies. Backstop writes an object
// of a copy's name only when its Rollout controls it: an object of that
// name that someone else made is an error, never taken over. Copies and
// sources are read without the cache: Secrets are never cached, and the
// ConfigMaps' cache holds metadata only.

// ErrCopiesChanged says the primary's copies do not hold the data the
// primary's template records, so they cannot be kept as its previous data.
var ErrCopiesChanged = errors.New("the primary's copies do not hold what the primary runs")

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
// ReadSources returns them) hold its data, and returns the digests of the
// copies as written, which equal the sources' when nothing changed
// meanwhile.
func EnsureCopies(ctx context.Context, c client.Client, uncached client.Reader, ro *backstopv1.Rollout, sources []client.Object) (Tracked, error) {
	n := NamesFor(ro)
	var out Tracked
	for _, src := range sources {
		ref := refOf(src)
		key := string(src.GetUID())
		written, err := ensureCopy(ctx, c, uncached, ro, ref, src, key, CopyName(n, ref.Name))
		if err != nil {
			return nil, err
		}
		out = append(out, TrackedConfig{ConfigRef: ref, Part: copyPart(written)})
	}
	return out, nil
}

// SavePreviousCopies keeps the data of the primary's copies of pc, what
// the primary runs before a promotion, in the previous copies
// (PreviousCopyName), for a restore in the bake time. It is idempotent:
// previous copies that already hold pc.Digest are left as they are, so a
// promotion tried again after it wrote the new data to the copies does not
// keep that data as the previous one.
func SavePreviousCopies(ctx context.Context, c client.Client, uncached client.Reader, ro *backstopv1.Rollout, pc PrimaryConfigs) error {
	if len(pc.Refs) == 0 {
		return nil
	}
	n := NamesFor(ro)
	if _, kept, err := readCopies(ctx, uncached, ro, pc.Refs, func(name string) string { return PreviousCopyName(n, name) }); err == nil && kept.Digest() == pc.Digest {
		return nil
	}
	copies, got, err := readCopies(ctx, uncached, ro, pc.Refs, func(name string) string { return CopyName(n, name) })
	if err != nil {
		return err
	}
	if got.Digest() != pc.Digest {
		return fmt.Errorf("%w: %s (digest %s, not %s)", ErrCopiesChanged, formatRefs(pc.Refs), got.Digest(), pc.Digest)
	}
	var written Tracked
	for i, cp := range copies {
		ref := pc.Refs[i]
		w, err := ensureCopy(ctx, c, uncached, ro, ref, cp, cp.GetAnnotations()[ConfigKeyAnnotation], PreviousCopyName(n, ref.Name))
		if err != nil {
			return err
		}
		written = append(written, TrackedConfig{ConfigRef: ref, Part: copyPart(w)})
	}
	if written.Digest() != pc.Digest {
		return fmt.Errorf("the previous copies of %s changed while they were written", formatRefs(pc.Refs))
	}
	return nil
}

// RestoreCopies makes the primary's copies of pc hold the data the
// previous copies kept (see SavePreviousCopies), and checks that it is the
// data of pc.Digest.
func RestoreCopies(ctx context.Context, c client.Client, uncached client.Reader, ro *backstopv1.Rollout, pc PrimaryConfigs) error {
	if len(pc.Refs) == 0 {
		return nil
	}
	n := NamesFor(ro)
	kept, got, err := readCopies(ctx, uncached, ro, pc.Refs, func(name string) string { return PreviousCopyName(n, name) })
	if err != nil {
		return fmt.Errorf("the previous data of %s was not kept: %w", formatRefs(pc.Refs), err)
	}
	if got.Digest() != pc.Digest {
		return fmt.Errorf("the previous copies of %s hold other data than the revision to restore (digest %s, not %s)", formatRefs(pc.Refs), got.Digest(), pc.Digest)
	}
	var written Tracked
	for i, cp := range kept {
		ref := pc.Refs[i]
		w, err := ensureCopy(ctx, c, uncached, ro, ref, cp, cp.GetAnnotations()[ConfigKeyAnnotation], CopyName(n, ref.Name))
		if err != nil {
			return err
		}
		written = append(written, TrackedConfig{ConfigRef: ref, Part: copyPart(w)})
	}
	if written.Digest() != pc.Digest {
		return fmt.Errorf("the primary's copies of %s changed while they were restored", formatRefs(pc.Refs))
	}
	return nil
}

// DeleteCopies deletes the primary's copies of the configs in refs that
// belong to ro. An object of a copy's name that does not belong to ro is
// left alone. The previous copies are kept: a restore in the bake time may
// need them, and they go with the Rollout.
func DeleteCopies(ctx context.Context, c client.Client, uncached client.Reader, ro *backstopv1.Rollout, refs []ConfigRef) error {
	n := NamesFor(ro)
	for _, ref := range refs {
		name := CopyName(n, ref.Name)
		obj, found, err := readConfig(ctx, uncached, ro.Namespace, ConfigRef{Kind: ref.Kind, Name: name})
		if err != nil {
			return err
		}
		if !found || !ownedBy(ro, obj) {
			continue
		}
		uid := obj.GetUID()
		if err := c.Delete(ctx, obj, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting %s %s/%s: %w", ref.Kind, ro.Namespace, name, err)
		}
	}
	return nil
}

// readCopies reads the copies of refs named by name, and their digests.
// A missing copy, or one that does not belong to ro, is an error.
func readCopies(ctx context.Context, uncached client.Reader, ro *backstopv1.Rollout, refs []ConfigRef, name func(string) string) ([]client.Object, Tracked, error) {
	var objs []client.Object
	var got Tracked
	for _, ref := range refs {
		cp := name(ref.Name)
		obj, found, err := readConfig(ctx, uncached, ro.Namespace, ConfigRef{Kind: ref.Kind, Name: cp})
		if err != nil {
			return nil, nil, err
		}
		if !found {
			return nil, nil, fmt.Errorf("%s %s/%s is missing", ref.Kind, ro.Namespace, cp)
		}
		if !ownedBy(ro, obj) {
			return nil, nil, &CopyConflictError{Kind: ref.Kind, Name: cp, Source: ref.Name, Rollout: ro.Name}
		}
		objs = append(objs, obj)
		got = append(got, TrackedConfig{ConfigRef: ref, Part: copyPart(obj)})
	}
	return objs, got, nil
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

// ensureCopy makes the object name, of ref's kind, a copy of from's data
// that belongs to ro, and returns it as stored.
func ensureCopy(ctx context.Context, c client.Client, uncached client.Reader, ro *backstopv1.Rollout, ref ConfigRef, from client.Object, key, name string) (client.Object, error) {
	want := copyOf(ro, ref, from, key, name)
	cur, found, err := readConfig(ctx, uncached, ro.Namespace, ConfigRef{Kind: ref.Kind, Name: name})
	if err != nil {
		return nil, err
	}
	if found && !ownedBy(ro, cur) {
		return nil, &CopyConflictError{Kind: ref.Kind, Name: name, Source: ref.Name, Rollout: ro.Name}
	}
	if found {
		if cs, ok := cur.(*corev1.Secret); ok && cs.Type != want.(*corev1.Secret).Type {
			// A Secret's type cannot change: the copy is made again.
			uid := cs.UID
			if err := c.Delete(ctx, cs, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
				return nil, fmt.Errorf("deleting %s %s/%s to change its type: %w", ref.Kind, ro.Namespace, name, err)
			}
			found = false
		}
	}
	if !found {
		if err := own(c, ro, want); err != nil {
			return nil, err
		}
		if err := c.Create(ctx, want); err != nil {
			return nil, fmt.Errorf("creating %s %s/%s: %w", ref.Kind, ro.Namespace, name, err)
		}
		return want, nil
	}
	if !setCopy(cur, want) {
		return cur, nil
	}
	if err := c.Update(ctx, cur); err != nil {
		return nil, fmt.Errorf("updating %s %s/%s: %w", ref.Kind, ro.Namespace, name, err)
	}
	return cur, nil
}

// copyOf is the copy named name of from's data.
func copyOf(ro *backstopv1.Rollout, ref ConfigRef, from client.Object, key, name string) client.Object {
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
		om.Annotations[ConfigKeyAnnotation] = key
		return &corev1.Secret{ObjectMeta: om, Type: f.Type, Data: maps.Clone(f.Data)}
	case *corev1.ConfigMap:
		return &corev1.ConfigMap{ObjectMeta: om, Data: maps.Clone(f.Data), BinaryData: maps.Clone(f.BinaryData)}
	}
	panic(fmt.Sprintf("copying a %T", from))
}

// setCopy sets on cur what copyOf wants and says whether anything changed.
// Labels and annotations others added are kept.
func setCopy(cur, want client.Object) bool {
	changed := false
	labels, annotations := cur.GetLabels(), cur.GetAnnotations()
	if labels == nil {
		labels = map[string]string{}
	}
	if annotations == nil {
		annotations = map[string]string{}
	}
	for k, v := range want.GetLabels() {
		if labels[k] != v {
			labels[k], changed = v, true
		}
	}
	for k, v := range want.GetAnnotations() {
		if annotations[k] != v {
			annotations[k], changed = v, true
		}
	}
	cur.SetLabels(labels)
	cur.SetAnnotations(annotations)
	switch c := cur.(type) {
	case *corev1.Secret:
		w := want.(*corev1.Secret)
		if !equalBytesMaps(c.Data, w.Data) {
			c.Data, changed = w.Data, true
		}
	case *corev1.ConfigMap:
		w := want.(*corev1.ConfigMap)
		if !maps.Equal(c.Data, w.Data) || !equalBytesMaps(c.BinaryData, w.BinaryData) {
			c.Data, c.BinaryData, changed = w.Data, w.BinaryData, true
		}
	}
	return changed
}

func equalBytesMaps(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || string(v) != string(w) {
			return false
		}
	}
	return true
}
