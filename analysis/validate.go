package analysis

import (
	"fmt"
	"time"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/workload"
)

// VarsFor are the values the query templates of ro's checks are rendered
// with, with Window set to the analysis interval; each kind of check sets
// Window to what it evaluates.
func VarsFor(ro *backstopv1.Rollout, args map[string]string) QueryVars {
	n := workload.NamesFor(ro)
	interval := DefaultInterval
	if ro.Spec.Analysis != nil {
		interval = intervalOf(ro.Spec.Analysis)
	}
	return QueryVars{
		Namespace: ro.Namespace, Name: ro.Name,
		Target: n.Target, Primary: n.Primary, Canary: n.Target,
		Service: n.Service, PrimaryService: n.PrimaryService, CanaryService: n.CanaryService,
		Window: interval, Interval: interval,
		Args: args,
	}
}

// CheckQueries renders every query of a check as it will be sent, for the
// canary and for the primary, and returns the first that cannot be: a Go
// template error, a PromQL syntax error, or an arg whose value would change
// the query's shape. The error names the field. It lets a Rollout be refused
// when it is applied rather than be inconclusive mid-release.
func CheckQueries(ro *backstopv1.Rollout, spec backstopv1.CheckSpec, args map[string]string) error {
	vars := VarsFor(ro, args)
	type query struct {
		field, text string
		window      time.Duration
	}
	var queries []query
	if spec.Query != "" {
		queries = append(queries, query{"query", spec.Query, vars.Window})
	}
	if o := spec.Objective; o != nil {
		for _, q := range []query{{"objective.errorRatioQuery", o.ErrorRatioQuery, 0}, {"objective.goodQuery", o.GoodQuery, 0}, {"objective.totalQuery", o.TotalQuery, 0}} {
			if q.text != "" {
				q.window = defaultShortWindow
				if o.ShortWindow != nil && o.ShortWindow.Duration > 0 {
					q.window = o.ShortWindow.Duration
				}
				queries = append(queries, q)
			}
		}
	}
	if s := spec.Sequential; s != nil {
		queries = append(queries, query{"sequential.errorsQuery", s.ErrorsQuery, vars.Interval}, query{"sequential.totalQuery", s.TotalQuery, vars.Interval})
	}
	for _, q := range queries {
		v := vars
		v.Window = q.window
		for _, side := range []QueryVars{v, swapped(v)} {
			if _, err := RenderQuery(q.text, side); err != nil {
				return fmt.Errorf("%s: %w", q.field, err)
			}
		}
	}
	return nil
}
