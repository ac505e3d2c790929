package workload

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// Config tracking: the ConfigMaps and Secrets a target's pod template reads
// are part of its release. The target's revision combines the TemplateHash
// of its template with a digest of the contents of those it reads
// (CombineRevision), so a change to one starts a release like a change to
// the template. The primary never reads them: it reads copies that belong
// to the Rollout, named after their data (CopyName) and never changed once
// written, made when a revision is promoted. Its template records which
// refs were renamed to copies (ConfigCopiesAnnotation, undone by
// TemplateHash) and the digest of what the copies hold
// (ConfigDigestAnnotation), so that Revision(primary) needs nothing but the
// primary, and a promotion that changes only config data rolls the
// primary's pods onto new copies while the old pods keep reading the old
// ones.

const (
	// ConfigCopiesAnnotation on the primary's pod template lists the refs
	// renamed to the primary's copies, comma separated and sorted, each as
	// Kind/name=copy, so TemplateHash can undo the rename. A
	// ControllerRevision that keeps a template of the primary carries the
	// same list.
	ConfigCopiesAnnotation = AnnotationPrefix + "config-copies"

	// ConfigDigestAnnotation on the primary's pod template records the
	// digest of the contents of the ConfigMaps and Secrets it reads through
	// copies (Tracked.Digest). Part of Revision; a change rolls the pods.
	ConfigDigestAnnotation = AnnotationPrefix + "config-digest"

	// ConfigSourceAnnotation on a copy names the ConfigMap or Secret it
	// copies.
	ConfigSourceAnnotation = AnnotationPrefix + "config-source"

	// ConfigKeyAnnotation on a copy of a Secret holds the key its part of
	// the digest is computed with (the UID of the Secret it was copied
	// from; see SecretPart). It is as protected as the Secret's data.
	ConfigKeyAnnotation = AnnotationPrefix + "config-key"
)

// ConfigKind is the kind of a config a pod template reads.
type ConfigKind string

const (
	// KindConfigMap is a ConfigMap.
	KindConfigMap ConfigKind = "ConfigMap"
	// KindSecret is a Secret.
	KindSecret ConfigKind = "Secret"
)

// ConfigRef names a ConfigMap or Secret in the namespace of the template
// that reads it.
type ConfigRef struct {
	// Kind is ConfigMap or Secret.
	Kind ConfigKind
	// Name of the object.
	Name string
}

// String is Kind/Name.
func (r ConfigRef) String() string { return string(r.Kind) + "/" + r.Name }

// ConfigRefs lists the ConfigMaps and Secrets tmpl reads, sorted (ConfigMaps
// first, then by name) and without duplicates: those of its volumes
// (configMap, secret, and the configMap and secret sources of projected
// volumes) and those of its init and regular containers' environment (env
// valueFrom configMapKeyRef and secretKeyRef, envFrom). imagePullSecrets are
// not listed: the kubelet reads them, not the application, and a copy
// would change nothing the canary could show. Optional refs are listed like
// the others; whether the object exists is for the reader to find out.
func ConfigRefs(tmpl corev1.PodTemplateSpec) []ConfigRef {
	seen := map[ConfigRef]bool{}
	spec := tmpl.Spec.DeepCopy()
	visitConfigRefs(spec, func(kind ConfigKind, name *string) {
		if *name != "" {
			seen[ConfigRef{Kind: kind, Name: *name}] = true
		}
	})
	out := make([]ConfigRef, 0, len(seen))
	for ref := range seen {
		out = append(out, ref)
	}
	sortRefs(out)
	return out
}

func sortRefs(refs []ConfigRef) {
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].Kind != refs[j].Kind {
			return refs[i].Kind < refs[j].Kind
		}
		return refs[i].Name < refs[j].Name
	})
}

// visitConfigRefs calls visit with a pointer to the name of every
// ConfigMap and Secret ref of spec (see ConfigRefs), so it may rename them.
func visitConfigRefs(spec *corev1.PodSpec, visit func(kind ConfigKind, name *string)) {
	for i := range spec.Volumes {
		v := &spec.Volumes[i].VolumeSource
		if v.ConfigMap != nil {
			visit(KindConfigMap, &v.ConfigMap.Name)
		}
		if v.Secret != nil {
			visit(KindSecret, &v.Secret.SecretName)
		}
		if v.Projected != nil {
			for j := range v.Projected.Sources {
				s := &v.Projected.Sources[j]
				if s.ConfigMap != nil {
					visit(KindConfigMap, &s.ConfigMap.Name)
				}
				if s.Secret != nil {
					visit(KindSecret, &s.Secret.Name)
				}
			}
		}
	}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			c := &cs[i]
			for j := range c.Env {
				if from := c.Env[j].ValueFrom; from != nil {
					if from.ConfigMapKeyRef != nil {
						visit(KindConfigMap, &from.ConfigMapKeyRef.Name)
					}
					if from.SecretKeyRef != nil {
						visit(KindSecret, &from.SecretKeyRef.Name)
					}
				}
			}
			for j := range c.EnvFrom {
				e := &c.EnvFrom[j]
				if e.ConfigMapRef != nil {
					visit(KindConfigMap, &e.ConfigMapRef.Name)
				}
				if e.SecretRef != nil {
					visit(KindSecret, &e.SecretRef.Name)
				}
			}
		}
	}
}

// CopyName is the name of the primary's copy of the config named name whose
// data has the digest part (ConfigMapPart or SecretPart):
// <target>-primary-<name>-<part, 10 characters>. Copies belong to one
// Rollout, so two Rollouts whose targets read the same ConfigMap promote it
// each at their own pace; their names change with their data, so a copy is
// never written over (pods that read it keep what they started with), and
// the copies of a kept revision stay for its restore.
func CopyName(n Names, name, part string) string {
	return fitName(n.Primary+"-"+name, "-"+part[:min(len(part), 10)], validation.DNS1123SubdomainMaxLength)
}

// TrackedConfig is a ConfigMap or Secret whose contents are part of a
// release, with the digest of its contents.
type TrackedConfig struct {
	ConfigRef
	// Part is the digest of the object's contents: ConfigMapPart or
	// SecretPart.
	Part string
}

// Tracked are the configs a template reads that are part of its release,
// sorted as ConfigRefs sorts them.
type Tracked []TrackedConfig

// Digest is the digest of the contents of every tracked config: empty when
// none is tracked, so that the revision of a template that reads none is
// its TemplateHash, as before config tracking.
func (t Tracked) Digest() string {
	if len(t) == 0 {
		return ""
	}
	h := sha256.New()
	for _, c := range t {
		fmt.Fprintf(h, "%s=%s\n", c.ConfigRef, c.Part)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Refs are the refs of t.
func (t Tracked) Refs() []ConfigRef {
	out := make([]ConfigRef, 0, len(t))
	for _, c := range t {
		out = append(out, c.ConfigRef)
	}
	return out
}

// HasSecret says whether t tracks a Secret.
func (t Tracked) HasSecret() bool {
	for _, c := range t {
		if c.Kind == KindSecret {
			return true
		}
	}
	return false
}

// Primary is what the primary of n records of t: the copies of t's
// configs and their digest.
func (t Tracked) Primary(n Names) PrimaryConfigs {
	pc := PrimaryConfigs{Digest: t.Digest()}
	for _, c := range t {
		pc.Copies = append(pc.Copies, ConfigCopy{ConfigRef: c.ConfigRef, Copy: CopyName(n, c.Name, c.Part)})
	}
	return pc
}

// PrimaryConfigs are the tracked configs a primary reads through copies,
// and the digest of their contents; the zero value for none.
type PrimaryConfigs struct {
	// Copies are the tracked configs and their copies, sorted by config.
	Copies []ConfigCopy
	// Digest is Tracked.Digest of their contents.
	Digest string
}

// ConfigCopy is a tracked config and the name of the copy the primary
// reads instead.
type ConfigCopy struct {
	ConfigRef
	// Copy is the copy's name (CopyName), of the same kind.
	Copy string
}

// CopyRef is the ref of the copy.
func (c ConfigCopy) CopyRef() ConfigRef { return ConfigRef{Kind: c.Kind, Name: c.Copy} }

// Refs are the tracked configs of pc.
func (pc PrimaryConfigs) Refs() []ConfigRef {
	out := make([]ConfigRef, 0, len(pc.Copies))
	for _, c := range pc.Copies {
		out = append(out, c.ConfigRef)
	}
	return out
}

// CopyRefs are the copies of pc.
func (pc PrimaryConfigs) CopyRefs() []ConfigRef {
	out := make([]ConfigRef, 0, len(pc.Copies))
	for _, c := range pc.Copies {
		out = append(out, c.CopyRef())
	}
	return out
}

// CombineRevision is the revision of a template whose TemplateHash is
// templateHash and whose tracked configs have configDigest: templateHash
// itself when nothing is tracked, otherwise a hash of both of the same
// length.
func CombineRevision(templateHash, configDigest string) string {
	if configDigest == "" {
		return templateHash
	}
	sum := sha256.Sum256([]byte(templateHash + "+" + configDigest))
	return hex.EncodeToString(sum[:5])
}

// ConfigMapPart is the digest of a ConfigMap's data and binaryData.
// ConfigMaps hold no secrets, so a plain hash will do.
func ConfigMapPart(cm *corev1.ConfigMap) string {
	sum := sha256.Sum256(contents(cm.Data, cm.BinaryData))
	return hex.EncodeToString(sum[:16])
}

// SecretPart is the digest of a Secret's data, an HMAC-SHA256 keyed with
// key: the UID of the Secret the data comes from.
//
// Revisions are written where people without access to Secrets read them
// (status, Events, annotations, the Git commit message of a revert), and a
// plain hash of a Secret holding a short password or a PIN would give its
// value away to anyone who hashes the likely values. The key is what makes
// that impossible: a Secret's UID is random (122 bits) and readable only
// by those who may read the Secret itself (get, list and watch of Secrets
// return the data with it; a UID also shows in the owner references of
// objects a Secret owns, which Secrets seldom do). The same holds for the
// part's first characters in a copy's name (CopyName). A Secret deleted and
// created again with the same data gets a new UID and so a new revision:
// its release is one that changes nothing, at worst. The copies of a Secret
// carry the key in ConfigKeyAnnotation, so their digest can be checked.
func SecretPart(s *corev1.Secret, key string) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(contents(nil, s.Data))
	return hex.EncodeToString(mac.Sum(nil)[:16])
}

// contents is a canonical form of a config's data: JSON, whose object
// keys encoding/json sorts.
func contents(data map[string]string, binary map[string][]byte) []byte {
	b, err := json.Marshal(struct {
		Data   map[string]string `json:"data,omitempty"`
		Binary map[string][]byte `json:"binary,omitempty"`
	}{data, binary})
	if err != nil {
		// Maps of strings and bytes always marshal; this is unreachable.
		panic(fmt.Sprintf("marshalling config data: %v", err))
	}
	return b
}

// Tracks says whether a ConfigMap or Secret with these annotations and
// Secret type (empty for a ConfigMap) is part of a release: it is unless
// ConfigTrackingAnnotation opts it out, or it is a service account token,
// which Kubernetes mints and a copy could not hold.
func Tracks(annotations map[string]string, secretType corev1.SecretType) bool {
	if annotations[backstopv1.ConfigTrackingAnnotation] == backstopv1.ConfigTrackingDisabled {
		return false
	}
	return secretType != corev1.SecretTypeServiceAccountToken
}

// renameToCopies rewrites the refs of tmpl to the configs of pc to their
// copies and records the rename and the digest in tmpl's annotations.
func renameToCopies(tmpl *corev1.PodTemplateSpec, pc PrimaryConfigs) {
	if len(pc.Copies) == 0 {
		return
	}
	copies := map[ConfigRef]string{}
	for _, c := range pc.Copies {
		copies[c.ConfigRef] = c.Copy
	}
	visitConfigRefs(&tmpl.Spec, func(kind ConfigKind, name *string) {
		if cp, ok := copies[ConfigRef{Kind: kind, Name: *name}]; ok {
			*name = cp
		}
	})
	if tmpl.Annotations == nil {
		tmpl.Annotations = map[string]string{}
	}
	tmpl.Annotations[ConfigCopiesAnnotation] = formatCopies(pc.Copies)
	tmpl.Annotations[ConfigDigestAnnotation] = pc.Digest
}

// undoCopies renames the refs of tmpl to the primary's copies back to the
// configs they copy, as ConfigCopiesAnnotation lists them. A copy's name
// cannot be the name of a config the target reads: the copy would then be
// that config, and Backstop refuses to write over an object it does not own.
func undoCopies(tmpl *corev1.PodTemplateSpec) {
	copies := parseCopies(tmpl.Annotations[ConfigCopiesAnnotation])
	if len(copies) == 0 {
		return
	}
	back := map[ConfigRef]string{}
	for _, c := range copies {
		back[c.CopyRef()] = c.Name
	}
	visitConfigRefs(&tmpl.Spec, func(kind ConfigKind, name *string) {
		if orig, ok := back[ConfigRef{Kind: kind, Name: *name}]; ok {
			*name = orig
		}
	})
}

// formatCopies and parseCopies write and read a list of copies as
// ConfigCopiesAnnotation holds it.
func formatCopies(copies []ConfigCopy) string {
	pairs := make([]string, 0, len(copies))
	for _, c := range copies {
		pairs = append(pairs, c.ConfigRef.String()+"="+c.Copy)
	}
	sort.Strings(pairs)
	return strings.Join(pairs, ",")
}

func parseCopies(s string) []ConfigCopy {
	if s == "" {
		return nil
	}
	var out []ConfigCopy
	for _, pair := range strings.Split(s, ",") {
		ref, cp, ok := strings.Cut(pair, "=")
		kind, name, ok2 := strings.Cut(ref, "/")
		if ok && ok2 {
			out = append(out, ConfigCopy{ConfigRef: ConfigRef{Kind: ConfigKind(kind), Name: name}, Copy: cp})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// PrimaryConfigsOf returns what a primary's pod template records of the
// configs it reads through copies.
func PrimaryConfigsOf(tmpl corev1.PodTemplateSpec) PrimaryConfigs {
	return PrimaryConfigs{Copies: parseCopies(tmpl.Annotations[ConfigCopiesAnnotation]), Digest: tmpl.Annotations[ConfigDigestAnnotation]}
}
