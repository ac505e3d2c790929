package ha_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/proc"
	"backstop.dev/backstop/test/testenv"
)

// shardLabel is the label that puts a Rollout into a shard (--shard).
const shardLabel = "backstop.dev/shard"

// TestShards runs two shards, a and b, each a manager with leader election,
// and four Rollouts: one labelled into each shard, one that moves from a to
// b in the pause after its canary weight 40, and one without the label. It
// proves that each shard elects its leader with a Lease of its own (both
// lead at once); that each manager acts only on its shard's Rollouts (the
// Rollouts its log names, its phase series); that a Rollout without the
// label is left alone by sharded managers; and that the moved Rollout is
// handed over: the old shard drops it at once, the new one resumes from its
// status without deciding any transition again, and its route, like the
// others', has every weight written once.
func TestShards(t *testing.T) {
	ns := env.Namespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env.RunDeploymentController(ctx, ns)
	env.RunGateway(ctx, ns)
	dir := t.TempDir()

	shards := map[string]*testenv.Manager{}
	holders := map[string]string{}
	for _, s := range []string{"a", "b"} {
		shards[s] = env.StartManager(t, dir, "shard-"+s, append(electionArgs(ns), "--shard="+s)...)
	}
	for _, s := range []string{"a", "b"} {
		name := "backstop-leader-" + s + ".backstop.dev"
		waitFor(t, "shard "+s+" to lead", testenv.Timeout, func() bool { return scrape(t, shards[s]).leads(name) })
		holders[s] = ptr.Deref(lease(t, ns, name).Spec.HolderIdentity, "")
		t.Logf("shard %s leads with the Lease %s, held by %s", s, name, holders[s])
	}
	if holders["a"] == "" || holders["a"] == holders["b"] {
		t.Errorf("the shards' Leases are held by %q and %q; want two holders", holders["a"], holders["b"])
	}
	if l := lease(t, ns, "backstop-leader.backstop.dev"); l.Name != "" {
		t.Errorf("sharded managers made the unsharded Lease, held by %q", ptr.Deref(l.Spec.HolderIdentity, ""))
	}

	newGateway(t, ns)
	apps := map[string]*app{
		"one":       newApp(t, ns, "one", map[string]string{shardLabel: "a"}),
		"two":       newApp(t, ns, "two", map[string]string{shardLabel: "b"}),
		"moved":     newApp(t, ns, "moved", map[string]string{shardLabel: "a"}),
		"unsharded": newApp(t, ns, "unsharded", nil),
	}
	released := []string{"one", "two", "moved"}
	writes := map[string]*testenv.RouteWrites{}
	for _, name := range released {
		writes[name] = env.WatchRouteWrites(t, ns, name)
		apps[name].waitPhase(t, backstopv1.PhaseIdle, releaseTimeout)
	}
	for _, name := range append(released, "unsharded") {
		apps[name].release(t)
	}

	moved := apps["moved"]
	moved.waitPause(t, 40)
	moved.setLabel(t, shardLabel, "b")
	waitFor(t, "shard a to drop the moved Rollout's series", testenv.Timeout, func() bool {
		return scrape(t, shards["a"]).phaseOf(ns, "moved") == ""
	})
	t.Logf("relabelled Rollout %s from shard a to b in the pause at canary weight 40; shard a dropped its series", moved.name)

	for _, name := range released {
		apps[name].waitPhase(t, backstopv1.PhaseSucceeded, releaseTimeout)
	}
	for _, name := range released {
		apps[name].checkWrites(t, writes[name])
	}

	// Each manager reports, and names in its log, only its shard's
	// Rollouts; the moved one ends up with b.
	owners := map[string]map[string]string{"a": {"one": "Succeeded"}, "b": {"two": "Succeeded", "moved": "Succeeded"}}
	decided := map[string]map[string][]string{}
	for s, m := range shards {
		metrics := scrape(t, m)
		lines := rolloutLines(t, m.Log())
		decided[s] = map[string][]string{}
		for name := range apps {
			if got, want := metrics.phaseOf(ns, name), owners[s][name]; got != want {
				t.Errorf("shard %s reports Rollout %s as %q; want %q", s, name, got, want)
			}
			for _, l := range lines[name] {
				if l.Msg == "Decided a transition" {
					decided[s][name] = append(decided[s][name], l.Reason+": "+l.Message)
				}
			}
			if name != "moved" && owners[s][name] == "" && len(lines[name]) > 0 {
				t.Errorf("shard %s's log names Rollout %s, of another shard, %d times: %+v", s, name, len(lines[name]), lines[name][0])
			}
		}
		t.Logf("shard %s logged %d decisions about one, %d about two, %d about moved, %d about unsharded",
			s, len(decided[s]["one"]), len(decided[s]["two"]), len(decided[s]["moved"]), len(decided[s]["unsharded"]))
	}

	// The moved Rollout's transitions: up to the pause after 40 by a, the
	// rest by b, none by both.
	fromA, fromB := decided["a"]["moved"], decided["b"]["moved"]
	for _, d := range fromA {
		if slices.Contains(fromB, d) {
			t.Errorf("both shards decided %q", d)
		}
	}
	if !slices.ContainsFunc(fromA, func(d string) bool { return strings.Contains(d, "Step 4 of 6") }) {
		t.Errorf("shard a did not start the pause after weight 40; it decided %q", fromA)
	}
	if len(fromB) == 0 || !strings.Contains(fromB[0], "Step 5 of 6") || !strings.HasPrefix(fromB[len(fromB)-1], "Promoted") {
		t.Errorf("shard b decided %q; want from step 5 to the promotion", fromB)
	}
	t.Logf("moved: shard a decided %q; shard b resumed with %q", fromA, fromB)

	// Nothing acted on the Rollout without the label: no status, no route.
	if st := apps["unsharded"].status(t); st.Phase != "" || st.ObservedGeneration != 0 {
		t.Errorf("a sharded manager acted on the unlabelled Rollout: %+v", st)
	}
	var route gwapiv1.HTTPRoute
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "unsharded"}, &route); !apierrors.IsNotFound(err) {
		t.Errorf("the unlabelled Rollout's route: %v; want none", err)
	}
}

// TestShardAlerts runs two shards, each a manager with its Alertmanager
// receiver, and a release in each whose Rollout fails on Alertmanager
// alerts. It proves the way docs/scale-out.md gives to reach the owning
// shard, sending every alert to every shard's receiver: an alert for shard
// b's Rollout, sent to both receivers, rolls back b's release and leaves
// a's alone; and an alert for a's Rollout sent to b's receiver alone
// changes nothing, since b does not own that Rollout, so a's release
// completes with every weight written once.
func TestShardAlerts(t *testing.T) {
	ns := env.Namespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env.RunDeploymentController(ctx, ns)
	env.RunGateway(ctx, ns)
	dir := t.TempDir()
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alertmanager", Namespace: ns},
		Data: map[string][]byte{"token": []byte(alertToken)}})

	receivers := map[string]string{}
	for _, s := range []string{"a", "b"} {
		addr, err := proc.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		env.StartManager(t, dir, "shard-"+s, "--shard="+s,
			"--alert-receiver-address="+addr, "--alert-receiver-secret="+ns+"/alertmanager")
		receivers[s] = "http://" + addr + "/alertmanager"
	}
	onAlerts := func(ro *backstopv1.Rollout) {
		ro.Spec.Analysis = &backstopv1.AnalysisSpec{Alerts: &backstopv1.AlertGuard{Sources: []string{"Alertmanager"}}}
	}
	newGateway(t, ns)
	one := newApp(t, ns, "one", map[string]string{shardLabel: "a"}, onAlerts)
	two := newApp(t, ns, "two", map[string]string{shardLabel: "b"}, onAlerts)
	writes := env.WatchRouteWrites(t, ns, "one")
	for _, a := range []*app{one, two} {
		a.waitPhase(t, backstopv1.PhaseIdle, releaseTimeout)
		a.release(t)
	}
	one.waitPause(t, 20)
	two.waitPause(t, 20)

	post := func(shard, rollout string) {
		waitFor(t, "shard "+shard+"'s receiver to take an alert for "+rollout, testenv.Timeout, func() bool {
			return postAlert(ns, rollout, receivers[shard]) == http.StatusOK
		})
	}
	post("b", "one") // to a Rollout shard b does not own
	post("a", "two") // fanned out to every shard, as Alertmanager would
	post("b", "two")

	two.waitPhase(t, backstopv1.PhaseRolledBack, releaseTimeout)
	one.waitPhase(t, backstopv1.PhaseSucceeded, releaseTimeout)
	one.checkWrites(t, writes)
	var why string
	if h := two.status(t).History; len(h) > 0 {
		why = h[0].Reason + ": " + h[0].Message
	}
	t.Logf("the alert for two, sent to both shards, rolled back its release (%s); one, whose alert reached only shard b, was promoted", why)
}

// alertToken is the Alertmanager receivers' bearer token in TestShardAlerts.
const alertToken = "shard-t0ken"

// postAlert posts to an Alertmanager receiver a firing alert for the
// Rollout ns/rollout, and returns the status code; 0 when the call failed.
func postAlert(ns, rollout, url string) int {
	body := `{"version":"4","status":"firing","receiver":"backstop","groupKey":"{}","alerts":[` +
		`{"status":"firing","labels":{"alertname":"HighErrorRate","namespace":"` + ns + `","rollout":"` + rollout + `"},"startsAt":"2026-01-01T00:00:00Z"}]}`
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+alertToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// logLine is what the test reads of a manager's JSON log line about a
// Rollout.
type logLine struct {
	Msg     string `json:"msg"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Rollout struct {
		Name string `json:"name"`
	} `json:"Rollout"`
}

// rolloutLines reads a manager's log and returns its lines about Rollouts,
// by the Rollout's name.
func rolloutLines(t *testing.T, path string) map[string][]logLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]logLine{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Rollout.Name == "" {
			continue // client-go's own lines are not JSON
		}
		out[l.Rollout.Name] = append(out[l.Rollout.Name], l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
