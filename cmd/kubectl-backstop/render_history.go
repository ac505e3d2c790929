package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// historyTable writes the table of `history`: the ended releases of
// status.history, newest first and numbered from 1. wide adds the message
// that says what decided each outcome.
func historyTable(w io.Writer, history []backstopv1.ReleaseRecord, now time.Time, wide bool) error {
	tw := printers.GetNewTabWriter(w)
	header := []string{"#", "FROM→TO", "SOURCE", "OUTCOME", "REASON", "FAILED CHECK", "REVERT COMMIT", "STARTED", "DURATION"}
	if wide {
		header = append(header, "MESSAGE")
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for i, h := range history {
		took := "-"
		if h.StartTime != nil && !h.StartTime.IsZero() {
			took = duration.HumanDuration(h.EndTime.Sub(h.StartTime.Time))
		}
		row := []string{
			fmt.Sprint(i + 1),
			dash(h.FromRevision) + "→" + dash(h.ToRevision),
			dash(short(h.ToSourceRevision, 12)),
			string(h.Outcome),
			dash(h.Reason),
			dash(h.FailedCheck),
			dash(short(h.RevertCommit, 12)),
			ago(now, h.StartTime),
			took,
		}
		if wide {
			row = append(row, dash(oneLine(h.Message)))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}
