package workload

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// TemplateHash returns a short, stable hash of a pod template. It ignores
// what Backstop itself writes into the primary's template (the PrimarySuffix
// on the labels listed in PrimaryLabelsAnnotation, the refs renamed to the
// primary's copies of ConfigMaps and Secrets listed in
// ConfigCopiesAnnotation, and every annotation with AnnotationPrefix), so the target's template and the primary's template
// hash the same exactly when the primary runs the target's version. Map order
// does not matter: the template is hashed as JSON, whose object keys
// encoding/json sorts.
//
// Compare templates as the API server returned them: the server fills in
// defaults (imagePullPolicy, terminationMessagePath, ...), so a template
// built in code hashes differently from the same template read back.
func TemplateHash(tmpl corev1.PodTemplateSpec) string {
	b, err := json.Marshal(normalize(tmpl))
	if err != nil {
		// A PodTemplateSpec always marshals; this is unreachable.
		panic(fmt.Sprintf("marshalling a pod template: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:5])
}

// normalize undoes Backstop's changes to a pod template: it strips the
// PrimarySuffix from the labels the template says were rewritten, renames
// the refs to the primary's config copies back, and drops Backstop's
// annotations.
func normalize(tmpl corev1.PodTemplateSpec) corev1.PodTemplateSpec {
	out := *tmpl.DeepCopy()
	undoCopies(&out)
	if keys := out.Annotations[PrimaryLabelsAnnotation]; keys != "" {
		for _, k := range strings.Split(keys, ",") {
			if v, ok := out.Labels[k]; ok {
				out.Labels[k] = strings.TrimSuffix(v, PrimarySuffix)
			}
		}
	}
	for k := range out.Annotations {
		if strings.HasPrefix(k, AnnotationPrefix) {
			delete(out.Annotations, k)
		}
	}
	if len(out.Annotations) == 0 {
		out.Annotations = nil
	}
	if len(out.Labels) == 0 {
		out.Labels = nil
	}
	return out
}

// primarySelector returns the target's selector with PrimarySuffix added to
// the value of each matchLabels entry, so that it selects none of the
// target's pods. MatchExpressions are kept as they are; they may not name a
// key of matchLabels.
func primarySelector(sel *metav1.LabelSelector) (*metav1.LabelSelector, error) {
	if sel == nil || len(sel.MatchLabels) == 0 {
		return nil, fmt.Errorf("the target's selector has no matchLabels: Backstop needs at least one to tell the primary's pods from the target's")
	}
	out := sel.DeepCopy()
	for k, v := range sel.MatchLabels {
		pv := v + PrimarySuffix
		if errs := validation.IsValidLabelValue(pv); len(errs) > 0 || v == "" {
			return nil, fmt.Errorf("selector label %s=%q cannot take the suffix %q: %s", k, v, PrimarySuffix, strings.Join(errs, "; "))
		}
		out.MatchLabels[k] = pv
	}
	for _, e := range sel.MatchExpressions {
		if _, ok := sel.MatchLabels[e.Key]; ok {
			return nil, fmt.Errorf("the target's selector names label %q in both matchLabels and matchExpressions, which Backstop cannot rewrite for the primary", e.Key)
		}
	}
	return out, nil
}

// primaryTemplate returns tmpl with the labels of sel (the primary's
// selector) set to sel's values and the rewritten keys recorded in
// PrimaryLabelsAnnotation.
func primaryTemplate(tmpl corev1.PodTemplateSpec, sel *metav1.LabelSelector) corev1.PodTemplateSpec {
	out := normalize(tmpl)
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	keys := make([]string, 0, len(sel.MatchLabels))
	for k, v := range sel.MatchLabels {
		out.Labels[k] = v
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[PrimaryLabelsAnnotation] = strings.Join(keys, ",")
	return out
}
