package main

import (
	"encoding/json"
	"strings"
	"testing"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// TestGoldenOutput runs the read-only commands against the fixtures and
// compares what they print with testdata/*.golden.
func TestGoldenOutput(t *testing.T) {
	getTime := goldenFixtures(t)
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"get", []string{"get", "-n", "shop"}},
		{"get-all-namespaces", []string{"get", "-A", "-l", "golden=true"}},
		{"get-wide", []string{"get", "-n", "payments", "-o", "wide"}},
		{"get-one", []string{"get", "-n", "payments", "ledger"}},
		{"status-canary", []string{"status", "-n", "shop", "app"}},
		{"status-bluegreen", []string{"status", "-n", "shop", "cart"}},
		{"status-rolledback", []string{"status", "-n", "shop", "search"}},
		{"history", []string{"history", "-n", "shop", "search"}},
		{"history-wide", []string{"history", "-n", "shop", "search", "-o", "wide"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			now := t0
			if tc.args[0] == "get" {
				now = getTime
			}
			got := run(t, now, tc.args...)
			if got.code != 0 || got.err != "" {
				t.Fatalf("exit code %d, stderr %q", got.code, got.err)
			}
			golden(t, tc.golden, got.out)
		})
	}
}

// TestGetPrintsObjects checks that -o json and -o yaml print Rollouts
// that read back as what the server holds.
func TestGetPrintsObjects(t *testing.T) {
	goldenFixtures(t)
	one := run(t, t0, "get", "-n", "shop", "app", "-o", "json")
	var ro backstopv1.Rollout
	if err := json.Unmarshal([]byte(one.out), &ro); err != nil {
		t.Fatalf("get -o json printed no Rollout: %v\n%s", err, one.out)
	}
	if ro.Kind != "Rollout" || ro.APIVersion != "backstop.dev/v1alpha1" || ro.Name != "app" || ro.Status.CanaryWeight != 20 {
		t.Errorf("get -o json printed %s %s %s with weight %d; want the Rollout app with weight 20", ro.APIVersion, ro.Kind, ro.Name, ro.Status.CanaryWeight)
	}
	if ro.ManagedFields != nil {
		t.Errorf("get -o json printed managed fields")
	}

	list := run(t, t0, "get", "-n", "payments", "-o", "json")
	var l backstopv1.RolloutList
	if err := json.Unmarshal([]byte(list.out), &l); err != nil {
		t.Fatalf("get -o json printed no list: %v\n%s", err, list.out)
	}
	if l.Kind != "RolloutList" || len(l.Items) != 2 || l.Items[0].Name != "api" || l.Items[1].Name != "ledger" {
		t.Errorf("get -o json printed a %s of %d items; want a RolloutList of api and ledger", l.Kind, len(l.Items))
	}

	yaml := run(t, t0, "get", "-n", "shop", "search", "-o", "yaml")
	for _, want := range []string{"kind: Rollout\n", "name: search\n", "phase: RolledBack\n"} {
		if !strings.Contains(yaml.out, want) {
			t.Errorf("get -o yaml lacks %q:\n%s", want, yaml.out)
		}
	}
}

// TestHistoryPrintsRecords checks that history -o json prints the records
// of status.history, newest first.
func TestHistoryPrintsRecords(t *testing.T) {
	goldenFixtures(t)
	got := run(t, t0, "history", "-n", "shop", "search", "-o", "json")
	var records []backstopv1.ReleaseRecord
	if err := json.Unmarshal([]byte(got.out), &records); err != nil {
		t.Fatalf("history -o json printed no records: %v\n%s", err, got.out)
	}
	if len(records) != 4 || records[0].Outcome != backstopv1.OutcomeRolledBack || records[0].RevertCommit != "c0ffee1234567890abcdef1234567890abcdef12" {
		t.Errorf("history -o json printed %+v; want 4 records, the newest rolled back and reverted", records)
	}
}

// TestEmptyResults checks what is said when there is nothing to list: on
// stderr, so that stdout stays empty for scripts, and [] for -o json.
func TestEmptyResults(t *testing.T) {
	ns := env.Namespace(t)
	got := run(t, t0, "get", "-n", ns)
	if got.code != 0 || got.out != "" || got.err != `No rollouts found in namespace "`+ns+`".`+"\n" {
		t.Errorf("get in an empty namespace: exit code %d, stdout %q, stderr %q", got.code, got.out, got.err)
	}
	create(t, rollout(ns, "new", canarySteps()), nil)
	got = run(t, t0, "history", "-n", ns, "new")
	if got.code != 0 || got.out != "" || got.err != `No release of rollout "new" has ended yet.`+"\n" {
		t.Errorf("history of a new Rollout: exit code %d, stdout %q, stderr %q", got.code, got.out, got.err)
	}
	got = run(t, t0, "history", "-n", ns, "new", "-o", "json")
	if got.code != 0 || got.out != "[]\n" {
		t.Errorf("history -o json of a new Rollout: exit code %d, stdout %q; want []", got.code, got.out)
	}
}
