package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// checkBound is a check's query, up to its first template action, and its
// upper bound.
type checkBound struct {
	name   string
	prefix string
	max    float64
}

// checkBounds are the bounds of ro's checks, which must all be max bounds
// with distinct query beginnings.
func checkBounds(ro *backstopv1.Rollout) ([]checkBound, error) {
	var out []checkBound
	for _, c := range ro.Spec.Analysis.Checks {
		if c.Max == nil {
			return nil, fmt.Errorf("check %s has no max bound", c.Name)
		}
		v, err := strconv.ParseFloat(string(*c.Max), 64)
		if err != nil {
			return nil, fmt.Errorf("check %s: %w", c.Name, err)
		}
		prefix, _, _ := strings.Cut(c.Query, "{{")
		for _, b := range out {
			if strings.HasPrefix(b.prefix, prefix) || strings.HasPrefix(prefix, b.prefix) {
				return nil, fmt.Errorf("checks %s and %s cannot be told apart by their queries", b.name, c.Name)
			}
		}
		out = append(out, checkBound{name: c.Name, prefix: prefix, max: v})
	}
	return out, nil
}

// breaches reports whether a is past the bound of the check it answers.
func breaches(bounds []checkBound, a promAnswer) bool {
	for _, b := range bounds {
		if strings.HasPrefix(a.query, b.prefix) {
			return !math.IsNaN(a.value) && a.value > b.max
		}
	}
	return false
}
