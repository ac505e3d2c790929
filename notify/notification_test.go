package notify

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

func rollout(phase backstopv1.RolloutPhase) *backstopv1.Rollout {
	return &backstopv1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout"},
		Spec:       backstopv1.RolloutSpec{Strategy: backstopv1.Strategy{Canary: &backstopv1.CanaryStrategy{}}},
		Status:     backstopv1.RolloutStatus{Phase: phase},
	}
}

// TestPhaseChange: the notification carries the Rollout's state after the
// change; on a rollback, the failed check and revert commit of the
// release's history entry.
func TestPhaseChange(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))
	rollbackEntry := backstopv1.ReleaseRecord{ToRevision: "bbb", Outcome: backstopv1.OutcomeRolledBack, FailedCheck: "error-rate", RevertCommit: "c0ffee"}
	tests := []struct {
		name     string
		from, to backstopv1.RolloutPhase
		edit     func(*backstopv1.Rollout)
		steps    int32
		check    func(t *testing.T, n Notification)
	}{{
		name: "a canary step", from: backstopv1.PhaseIdle, to: backstopv1.PhaseProgressing, steps: 4,
		edit: func(ro *backstopv1.Rollout) {
			ro.Status.CurrentStep, ro.Status.CanaryWeight = 1, 20
			ro.Status.StableRevision, ro.Status.CanaryRevision = "aaa", "bbb"
			ro.Status.StableSourceRevision, ro.Status.CanarySourceRevision = "main@sha1:1", "main@sha1:2"
		},
		check: func(t *testing.T, n Notification) {
			if n.Step == nil || *n.Step != (Step{Current: 2, Total: 4}) {
				t.Errorf("step = %+v; want 2 of 4", n.Step)
			}
			if n.CanaryWeight != 20 || n.StableRevision != "aaa" || n.CanaryRevision != "bbb" ||
				n.StableSourceRevision != "main@sha1:1" || n.CanarySourceRevision != "main@sha1:2" {
				t.Errorf("weight and revisions = %+v", n)
			}
			if n.Type != EventType || n.Version != Version || n.Namespace != "shop" || n.Rollout != "checkout" ||
				n.Phase != backstopv1.PhaseProgressing || n.PreviousPhase != backstopv1.PhaseIdle || n.Strategy != "canary" {
				t.Errorf("identity = %+v", n)
			}
			if !n.Time.Equal(now) || n.Time.Location() != time.UTC {
				t.Errorf("time = %v; want %v in UTC", n.Time, now)
			}
		},
	}, {
		name: "the last step's promotion shows n of n", from: backstopv1.PhaseProgressing, to: backstopv1.PhasePromoting, steps: 3,
		edit: func(ro *backstopv1.Rollout) { ro.Status.CurrentStep = 3 },
		check: func(t *testing.T, n Notification) {
			if n.Step == nil || *n.Step != (Step{Current: 3, Total: 3}) {
				t.Errorf("step = %+v; want 3 of 3", n.Step)
			}
		},
	}, {
		name: "a rollback takes the failed check from the history", from: backstopv1.PhasePaused, to: backstopv1.PhaseRollingBack, steps: 2,
		edit: func(ro *backstopv1.Rollout) {
			ro.Status.CanaryRevision = "bbb"
			ro.Status.History = []backstopv1.ReleaseRecord{rollbackEntry}
		},
		check: func(t *testing.T, n Notification) {
			if n.FailedCheck != "error-rate" || n.RevertCommit != "c0ffee" {
				t.Errorf("failed check %q, revert %q; want error-rate, c0ffee", n.FailedCheck, n.RevertCommit)
			}
		},
	}, {
		name: "a pushed revert's commit before the history has it", from: backstopv1.PhaseRollingBack, to: backstopv1.PhaseRolledBack,
		edit: func(ro *backstopv1.Rollout) {
			ro.Status.CanaryRevision = "bbb"
			ro.Status.History = []backstopv1.ReleaseRecord{{ToRevision: "bbb", Outcome: backstopv1.OutcomeRolledBack, FailedCheck: "latency"}}
			ro.Status.Revert = &backstopv1.RevertStatus{State: backstopv1.RevertPushed, Release: "shop/checkout@bbb", Commit: "beef"}
		},
		check: func(t *testing.T, n Notification) {
			if n.FailedCheck != "latency" || n.RevertCommit != "beef" {
				t.Errorf("failed check %q, revert %q; want latency, beef", n.FailedCheck, n.RevertCommit)
			}
		},
	}, {
		name: "a promotion shows no failed check of an older rollback", from: backstopv1.PhasePromoting, to: backstopv1.PhaseSucceeded, steps: 2,
		edit: func(ro *backstopv1.Rollout) {
			ro.Status.StableRevision = "ccc"
			ro.Status.History = []backstopv1.ReleaseRecord{{ToRevision: "ccc", Outcome: backstopv1.OutcomePromoted}, rollbackEntry}
		},
		check: func(t *testing.T, n Notification) {
			if n.FailedCheck != "" || n.RevertCommit != "" || n.Step != nil {
				t.Errorf("failed check %q, revert %q, step %+v; want none after a promotion", n.FailedCheck, n.RevertCommit, n.Step)
			}
		},
	}, {
		name: "blue-green has no steps", from: backstopv1.PhaseIdle, to: backstopv1.PhaseProgressing,
		edit: func(ro *backstopv1.Rollout) {
			ro.Spec.Strategy = backstopv1.Strategy{BlueGreen: &backstopv1.BlueGreenStrategy{}}
		},
		check: func(t *testing.T, n Notification) {
			if n.Strategy != "blueGreen" || n.Step != nil {
				t.Errorf("strategy %q, step %+v; want blueGreen without a step", n.Strategy, n.Step)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, after := rollout(tt.from), rollout(tt.to)
			tt.edit(after)
			tt.check(t, PhaseChange(before, after, tt.steps, now))
		})
	}
}

// TestSelects: a target without phases gets every change but the one to
// Initializing; one with phases gets only those.
func TestSelects(t *testing.T) {
	tests := []struct {
		phases []backstopv1.RolloutPhase
		phase  backstopv1.RolloutPhase
		want   bool
	}{
		{nil, backstopv1.PhaseInitializing, false},
		{nil, backstopv1.PhaseIdle, true},
		{nil, backstopv1.PhaseRolledBack, true},
		{[]backstopv1.RolloutPhase{backstopv1.PhaseRolledBack}, backstopv1.PhaseRolledBack, true},
		{[]backstopv1.RolloutPhase{backstopv1.PhaseRolledBack}, backstopv1.PhaseSucceeded, false},
		{[]backstopv1.RolloutPhase{backstopv1.PhaseInitializing}, backstopv1.PhaseInitializing, true},
	}
	for _, tt := range tests {
		if got := Selects(tt.phases, tt.phase); got != tt.want {
			t.Errorf("Selects(%v, %s) = %v; want %v", tt.phases, tt.phase, got, tt.want)
		}
	}
}

// TestTargets: a Rollout's own targets, with their Secrets in its
// namespace, then the cluster default unless the Rollout skips it.
func TestTargets(t *testing.T) {
	def := &types.NamespacedName{Namespace: "backstop-system", Name: "notify"}
	ro := rollout(backstopv1.PhaseIdle)
	ro.Spec.Notifications = &backstopv1.NotificationSpec{Targets: []backstopv1.NotificationTarget{
		{Name: "chat", Type: backstopv1.NotifySlack, URLSecretRef: backstopv1.SecretKeyReference{Name: "urls", Key: "slack"},
			Phases: []backstopv1.RolloutPhase{backstopv1.PhaseRolledBack}},
		{Name: "audit", URLSecretRef: backstopv1.SecretKeyReference{Name: "urls", Key: "audit"}},
	}}
	got := Targets(ro, def)
	if len(got) != 3 {
		t.Fatalf("Targets = %+v; want chat, audit and the cluster default", got)
	}
	if c := got[0]; c.Name != "chat" || c.Type != backstopv1.NotifySlack || c.Secret != (types.NamespacedName{Namespace: "shop", Name: "urls"}) ||
		c.Key != "slack" || len(c.Phases) != 1 || c.ClusterDefault {
		t.Errorf("first target = %+v", c)
	}
	if a := got[1]; a.Type != backstopv1.NotifyWebhook {
		t.Errorf("a target without a type is %q; want Webhook", a.Type)
	}
	if d := got[2]; !d.ClusterDefault || d.Name != ClusterDefaultName || d.Secret != *def || d.Key != KeyAddress || d.Type != "" {
		t.Errorf("cluster default = %+v", d)
	}

	ro.Spec.Notifications.SkipClusterDefault = true
	if got := Targets(ro, def); len(got) != 2 {
		t.Errorf("with skipClusterDefault, Targets = %+v; want the Rollout's two", got)
	}
	if got := Targets(rollout(backstopv1.PhaseIdle), nil); len(got) != 0 {
		t.Errorf("without targets or a cluster default, Targets = %+v; want none", got)
	}
	if got := Targets(rollout(backstopv1.PhaseIdle), def); len(got) != 1 || !got[0].ClusterDefault {
		t.Errorf("a Rollout without notifications gets %+v; want the cluster default", got)
	}
}

// TestEndpointFromSecret: a Rollout's target takes the URL from its key;
// the cluster default takes its type and phases from the Secret too. A bad
// value is reported without being shown.
func TestEndpointFromSecret(t *testing.T) {
	secret := types.NamespacedName{Namespace: "backstop-system", Name: "notify"}
	own := Target{Name: "chat", Type: backstopv1.NotifySlack, Phases: []backstopv1.RolloutPhase{backstopv1.PhaseRolledBack}, Secret: secret, Key: "slack"}
	def := Target{Name: ClusterDefaultName, Secret: secret, Key: KeyAddress, ClusterDefault: true}
	const url = "https://chat.example/hooks/T0KEN"
	tests := []struct {
		name    string
		target  Target
		data    map[string]string
		want    Endpoint
		wantErr string
	}{
		{name: "a Rollout's target", target: own, data: map[string]string{"slack": " " + url + "\n"},
			want: Endpoint{Type: backstopv1.NotifySlack, URL: url, Phases: own.Phases}},
		{name: "a missing key", target: own, data: map[string]string{"teams": url}, wantErr: `Secret "notify" in namespace "backstop-system" has no key "slack"`},
		{name: "not a URL", target: own, data: map[string]string{"slack": "chat.example/hooks/T0KEN"}, wantErr: `key "slack" of Secret "notify" in namespace "backstop-system" is not an http or https URL`},
		{name: "the cluster default as a webhook", target: def, data: map[string]string{"address": url},
			want: Endpoint{Type: backstopv1.NotifyWebhook, URL: url}},
		{name: "the cluster default for Teams on two phases", target: def,
			data: map[string]string{"address": url, "type": "Teams", "phases": "RolledBack, Succeeded"},
			want: Endpoint{Type: backstopv1.NotifyTeams, URL: url, Phases: []backstopv1.RolloutPhase{backstopv1.PhaseRolledBack, backstopv1.PhaseSucceeded}}},
		{name: "the cluster default of an unknown type", target: def, data: map[string]string{"address": url, "type": "Email"},
			wantErr: `must be Webhook, Slack or Teams, not "Email"`},
		{name: "the cluster default with an unknown phase", target: def, data: map[string]string{"address": url, "phases": "Done"},
			wantErr: `names an unknown phase "Done"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := map[string][]byte{}
			for k, v := range tt.data {
				data[k] = []byte(v)
			}
			got, err := EndpointFromSecret(tt.target, data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !IsPermanent(err) {
					t.Fatalf("error = %v; want a permanent one saying %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "T0KEN") {
					t.Errorf("the error shows the URL: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != tt.want.Type || got.URL != tt.want.URL || strings.Join(phaseNames(got.Phases), ",") != strings.Join(phaseNames(tt.want.Phases), ",") {
				t.Errorf("endpoint = %+v; want %+v", got, tt.want)
			}
		})
	}
}

func phaseNames(ps []backstopv1.RolloutPhase) []string {
	var out []string
	for _, p := range ps {
		out = append(out, string(p))
	}
	return out
}
