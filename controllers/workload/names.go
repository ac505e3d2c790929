// Package workload manages the Kubernetes objects a Rollout runs on: the
// primary Deployment that serves the last promoted template, the copies of
// the ConfigMaps and Secrets it reads, the Services that select the
// primary's and the candidate's pods, the primary's twins of the user's
// HorizontalPodAutoscalers and KEDA ScaledObjects (and the pause of the
// latter between releases), the replica counts of both pod sets, the
// templates the primary ran, kept as ControllerRevisions so a promotion can
// be undone, and the hand-back of a deleted Rollout's workload to the
// target. It decides nothing about a release: the Rollout
// state machine says what it wants and this package makes the cluster say
// the same, writing only when something differs.
package workload

import (
	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

const (
	// AnnotationPrefix marks annotations Backstop writes. TemplateHash
	// ignores pod template annotations with this prefix.
	AnnotationPrefix = "backstop.dev/"

	// TemplateHashAnnotation on the primary Deployment records the
	// revision (Revision) of the template it was last given: its
	// TemplateHash, combined with the digest of the configs it reads
	// through copies.
	TemplateHashAnnotation = AnnotationPrefix + "template-hash"

	// PrimaryLabelsAnnotation on the primary's pod template lists, comma
	// separated and sorted, the label keys whose values carry PrimarySuffix,
	// so TemplateHash can undo the rewrite.
	PrimaryLabelsAnnotation = AnnotationPrefix + "primary-labels"

	// HPASourceAnnotation on a primary HorizontalPodAutoscaler names the
	// user's HorizontalPodAutoscaler it mirrors.
	HPASourceAnnotation = AnnotationPrefix + "hpa-source"

	// PrimarySuffix ends the names of the primary's objects and the values
	// of the primary's selector labels.
	PrimarySuffix = "-primary"

	// CanarySuffix ends the name of the Service that selects the target's
	// pods.
	CanarySuffix = "-canary"
)

// Names are the names of the objects of one Rollout, all in its namespace.
type Names struct {
	// Namespace of the Rollout and of every object below.
	Namespace string
	// Target is the Deployment kept in Git: the candidate.
	Target string
	// Primary is the Deployment Backstop keeps with the last promoted
	// template: <target>-primary.
	Primary string
	// Service is the base name of the Services: spec.service.name, or the
	// target's name.
	Service string
	// PrimaryService selects the primary's pods: <service>-primary.
	PrimaryService string
	// CanaryService selects the target's pods: <service>-canary.
	CanaryService string
}

// NamesFor returns the names of the objects of ro.
func NamesFor(ro *backstopv1.Rollout) Names {
	target := ro.Spec.TargetRef.Name
	svc := ro.Spec.Service.Name
	if svc == "" {
		svc = target
	}
	return Names{
		Namespace:      ro.Namespace,
		Target:         target,
		Primary:        target + PrimarySuffix,
		Service:        svc,
		PrimaryService: svc + PrimarySuffix,
		CanaryService:  svc + CanarySuffix,
	}
}
