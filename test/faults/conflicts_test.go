package faults

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/test/rig"
)

// TestConflictsDuringARelease proves that update conflicts do not make the
// manager write a step twice or lose one. During a healthy release,
// another writer changes, in a tight loop, the three objects the manager
// writes with the resourceVersion it read: a label of the Rollout (whose
// status the manager patches), a label of the HTTPRoute (whose weights it
// updates) and an annotation of the primary Deployment (which it updates
// to promote). The API server answers the manager's stale writes with 409
// Conflict; the release still ends promoted, with each route state
// written once (20%, 60%, then all on the new primary) and one promotion.
// It prints how many 409s the manager got, by verb, from its
// rest_client_requests_total, and how many writes the other writer made.
func TestConflictsDuringARelease(t *testing.T) {
	ctx := testContext(t)
	r := rig.New(t, env, rig.Options{Apps: 1})
	r.StartManager(t)
	app := r.Apps[0]
	before, err := conflicts(ctx, r.Manager.Metrics)
	if err != nil {
		t.Fatal(err)
	}

	stop, writes := interfere(t, r, app)
	rel, err := r.Release(ctx, app, "v2", rig.Healthy)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = r.WaitForEnd(ctx, rel)
	took := time.Since(start)
	stop()
	if err != nil {
		t.Fatal(err)
	}

	expectRoutes(t, r, app, 0, 20, 60, 0)
	expectPromotions(t, r, app, "v1", "v2")
	after, err := conflicts(ctx, r.Manager.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	total, byVerb := 0, map[string]int{}
	for verb, n := range after {
		if d := n - before[verb]; d > 0 {
			byVerb[verb], total = d, total+d
		}
	}
	if total == 0 {
		t.Errorf("the manager got no 409 during the release: the other writer made no conflict, so the test proves nothing")
	}
	t.Logf("release promoted in %s; the manager got %d 409 Conflicts %v while another writer made %v; route writes %d, promotions 1",
		seconds(took), total, byVerb, writes(), len(r.RouteWrites(app)))
}

// interfere starts, until stop, one goroutine per object the manager
// writes during a release that changes its metadata as fast as the API
// server takes it: a label of the Rollout, a label of the route, an
// annotation of the primary Deployment. writes counts the changes made
// per object.
func interfere(t *testing.T, r *rig.Rig, app string) (stop func(), writes func() map[string]int64) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	counts := map[string]*atomic.Int64{}
	for name, obj := range map[string]client.Object{
		"Rollout":   &backstopv1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: app}},
		"HTTPRoute": &gwapiv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: app}},
		"primary":   &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: app + "-primary"}},
	} {
		n := &atomic.Int64{}
		counts[name] = n
		field := "labels"
		if name == "primary" {
			field = "annotations"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				patch := fmt.Sprintf(`{"metadata":{%q:{"faults.backstop.dev/tick":"%d"}}}`, field, i)
				if r.Env.Client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(patch))) == nil {
					n.Add(1)
				}
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
	}
	stop = func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop, func() map[string]int64 {
		out := map[string]int64{}
		for name, n := range counts {
			out[name] = n.Load()
		}
		return out
	}
}

// conflicts reads the manager's rest_client_requests_total{code="409"}
// from its metrics endpoint, by verb.
func conflicts(ctx context.Context, addr string) (map[string]int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "rest_client_requests_total{") || !strings.Contains(line, `code="409"`) {
			continue
		}
		labels, value, _ := strings.Cut(line[len("rest_client_requests_total{"):], "} ")
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", line, err)
		}
		verb := "?"
		for _, l := range strings.Split(labels, ",") {
			if k, val, _ := strings.Cut(l, "="); k == "method" {
				verb = strings.Trim(val, `"`)
			}
		}
		out[verb] += int(v)
	}
	return out, sc.Err()
}
