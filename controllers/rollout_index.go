package controllers

import (
	"sigs.k8s.io/controller-runtime/pkg/client"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/router"
)

// The index functions below return, for a Rollout, the keys of the objects
// it references, in the form nameKey and clusterKey produce for a watched
// object.

func indexTargets(o client.Object) []string {
	ro := o.(*backstopv1.Rollout)
	return []string{ro.Namespace + "/" + ro.Spec.TargetRef.Name}
}

func indexRoutes(o client.Object) []string {
	ro := o.(*backstopv1.Rollout)
	keys := make([]string, 0, len(ro.Spec.Routes))
	for _, rt := range ro.Spec.Routes {
		keys = append(keys, ro.Namespace+"/"+rt.Name)
		if !rt.Existing {
			// A generated route may have a blue-green preview twin.
			keys = append(keys, ro.Namespace+"/"+router.PreviewName(rt.Name))
		}
	}
	return keys
}

func indexGateways(o client.Object) []string {
	ro := o.(*backstopv1.Rollout)
	var keys []string
	for _, rt := range ro.Spec.Routes {
		for _, ref := range rt.ParentRefs {
			if key, ok := gatewayKey(ro.Namespace, ref); ok {
				keys = append(keys, key.String())
			}
		}
	}
	return keys
}

// indexTemplates indexes the templates of one kind that a Rollout's checks use.
func indexTemplates(kind string) client.IndexerFunc {
	return func(o client.Object) []string {
		ro := o.(*backstopv1.Rollout)
		if ro.Spec.Analysis == nil {
			return nil
		}
		var keys []string
		for _, c := range ro.Spec.Analysis.Checks {
			if c.TemplateRef == nil || c.TemplateRef.Kind != kind {
				continue
			}
			if kind == backstopv1.ClusterSLOTemplateKindName {
				keys = append(keys, c.TemplateRef.Name)
			} else {
				keys = append(keys, ro.Namespace+"/"+c.TemplateRef.Name)
			}
		}
		return keys
	}
}
