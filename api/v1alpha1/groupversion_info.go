// Package v1alpha1 holds the Backstop API: Rollout, SLOTemplate and
// ClusterSLOTemplate in the group backstop.dev.
//
// The package imports nothing of Backstop's own; each field's doc comment is
// its reference documentation.
//
// +kubebuilder:object:generate=true
// +groupName=backstop.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the Backstop API.
	GroupVersion = schema.GroupVersion{Group: "backstop.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the Backstop types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the Backstop types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
