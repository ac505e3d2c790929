package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/cli-runtime/pkg/printers"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// rolloutTable writes the table of `get`: one row per Rollout. allNamespaces
// adds the NAMESPACE column, wide the READY and MESSAGE columns of the
// Ready condition.
func rolloutTable(w io.Writer, rollouts []backstopv1.Rollout, now time.Time, allNamespaces, wide bool) error {
	tw := printers.GetNewTabWriter(w)
	header := []string{"NAME", "STRATEGY", "PHASE", "STEP", "WEIGHT", "STABLE", "CANARY", "REVERT", "AGE"}
	if allNamespaces {
		header = append([]string{"NAMESPACE"}, header...)
	}
	if wide {
		header = append(header, "READY", "MESSAGE")
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for i := range rollouts {
		ro := &rollouts[i]
		revert := "-"
		if ro.Status.Revert != nil {
			revert = dash(string(ro.Status.Revert.State))
		}
		row := []string{
			ro.Name,
			strategyName(ro),
			phaseName(ro.Status.Phase),
			stepColumn(ro),
			fmt.Sprintf("%d%%", ro.Status.CanaryWeight),
			dash(ro.Status.StableRevision),
			dash(ro.Status.CanaryRevision),
			revert,
			age(now, ro.CreationTimestamp.Time),
		}
		if allNamespaces {
			row = append([]string{ro.Namespace}, row...)
		}
		if wide {
			ready, message := "-", "-"
			if c := readyCondition(ro); c != nil {
				ready, message = string(c.Status), dash(oneLine(c.Message))
			}
			row = append(row, ready, message)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// oneLine keeps a message on one line of a table.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
