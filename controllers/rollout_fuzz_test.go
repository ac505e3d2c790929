package controllers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"
	"k8s.io/utils/ptr"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	"backstop.dev/backstop/controllers/plan"
)

// rolloutFuzzMaxDuration is the longest duration the CRD admits in any
// field (the CEL rule duration(self) <= duration('8760h') on each), and so
// the longest wait the plan may ask for.
const rolloutFuzzMaxDuration = 8760 * time.Hour

// rolloutFuzzCRD is the Rollout CRD's schema as the apiserver holds it,
// read from config/crd/bases.
type rolloutFuzzCRD struct {
	schema    *structuralschema.Structural
	validator *validate.SchemaValidator
	// rules counts the fields that carry each CEL rule of the CRD.
	rules map[string]int
}

// rolloutFuzzRules models the CEL rules of the CRD that the plan's bounds
// rest on; self is the value at the rule's field, after pruning and
// defaulting, with nulls dropped. The apiserver evaluates every rule; the
// others (checks, routes, hooks, revert) are not modelled, so the fuzzer
// may feed the controller specs the apiserver would refuse for them, never
// the other way round.
var rolloutFuzzRules = map[string]func(self any) bool{
	`has(self.canary) != has(self.blueGreen)`: func(self any) bool {
		return rolloutFuzzHas(self, "canary") != rolloutFuzzHas(self, "blueGreen")
	},
	`has(self.steps) != has(self.stepWeight)`: func(self any) bool {
		return rolloutFuzzHas(self, "steps") != rolloutFuzzHas(self, "stepWeight")
	},
	`has(self.stepWeight) == has(self.interval)`: func(self any) bool {
		return rolloutFuzzHas(self, "stepWeight") == rolloutFuzzHas(self, "interval")
	},
	`!has(self.maxWeight) || has(self.stepWeight)`: func(self any) bool {
		return !rolloutFuzzHas(self, "maxWeight") || rolloutFuzzHas(self, "stepWeight")
	},
	`!has(self.maxWeight) || !has(self.stepWeight) || self.stepWeight <= self.maxWeight`: func(self any) bool {
		if !rolloutFuzzHas(self, "maxWeight") || !rolloutFuzzHas(self, "stepWeight") {
			return true
		}
		m := self.(map[string]any)
		step, ok1 := m["stepWeight"].(int64)
		maxWeight, ok2 := m["maxWeight"].(int64)
		return ok1 && ok2 && step <= maxWeight
	},
	`[has(self.setWeight), has(self.pause), has(self.analysis)].filter(x, x).size() == 1`: func(self any) bool {
		n := 0
		for _, f := range []string{"setWeight", "pause", "analysis"} {
			if rolloutFuzzHas(self, f) {
				n++
			}
		}
		return n == 1
	},
	`has(self.headers) || has(self.cookies)`: func(self any) bool {
		return rolloutFuzzHas(self, "headers") || rolloutFuzzHas(self, "cookies")
	},
	// CEL's duration() parses as Go does and fails on a duration that
	// does not fit; a failing rule refuses the object.
	`duration(self) <= duration('8760h')`: func(self any) bool {
		s, ok := self.(string)
		if !ok {
			return false
		}
		d, err := time.ParseDuration(s)
		return err == nil && d <= rolloutFuzzMaxDuration
	},
	`duration(self) >= duration('1s')`: func(self any) bool {
		s, ok := self.(string)
		if !ok {
			return false
		}
		d, err := time.ParseDuration(s)
		return err == nil && d >= time.Second
	},
}

func rolloutFuzzHas(self any, field string) bool {
	m, ok := self.(map[string]any)
	if !ok {
		return false
	}
	_, ok = m[field]
	return ok
}

// loadRolloutFuzzCRD reads the CRD and builds its structural schema and
// OpenAPI validator, as the apiserver does for custom resources.
func loadRolloutFuzzCRD(tb testing.TB) *rolloutFuzzCRD {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "config", "crd", "bases", "backstop.dev_rollouts.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		tb.Fatal(err)
	}
	var props *apiextensionsv1.JSONSchemaProps
	for _, v := range crd.Spec.Versions {
		if v.Name == backstopv1.GroupVersion.Version && v.Schema != nil {
			props = v.Schema.OpenAPIV3Schema
		}
	}
	if props == nil {
		tb.Fatalf("the CRD has no schema for %s", backstopv1.GroupVersion.Version)
	}
	var internal apiextensions.JSONSchemaProps
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(props, &internal, nil); err != nil {
		tb.Fatal(err)
	}
	s, err := structuralschema.NewStructural(&internal)
	if err != nil {
		tb.Fatal(err)
	}
	c := &rolloutFuzzCRD{schema: s, validator: validate.NewSchemaValidator(s.ToKubeOpenAPI(), nil, "", strfmt.Default), rules: map[string]int{}}
	var walk func(s *structuralschema.Structural)
	walk = func(s *structuralschema.Structural) {
		if s == nil {
			return
		}
		for _, r := range s.XValidations {
			c.rules[r.Rule]++
		}
		for _, p := range s.Properties {
			walk(&p)
		}
		walk(s.Items)
		if s.AdditionalProperties != nil {
			walk(s.AdditionalProperties.Structural)
		}
	}
	walk(s)
	return c
}

// admit does to a request body what the apiserver does before it stores a
// Rollout: decode it (numbers as int64 or float64), drop null fields,
// prune unknown ones, apply the schema's defaults, then validate it with
// the schema and the modelled CEL rules. The status is not part of a
// request (the status subresource is), and metadata is the apiserver's.
// It returns the stored JSON, or why the request is refused.
func (c *rolloutFuzzCRD) admit(body []byte) ([]byte, string) {
	var obj map[string]any
	if err := utiljson.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, "not a JSON object"
	}
	delete(obj, "status")
	obj["apiVersion"] = backstopv1.GroupVersion.String()
	obj["kind"] = backstopv1.RolloutKind
	pruning.Prune(obj, c.schema, true)
	obj["metadata"] = map[string]any{"name": "fuzz", "namespace": "fuzz", "generation": int64(1), "uid": "f0"}
	rolloutFuzzDefault(obj, c.schema)
	if res := c.validator.Validate(obj); !res.IsValid() {
		return nil, "refused by the schema"
	}
	if rule := rolloutFuzzCheckRules(obj, c.schema); rule != "" {
		return nil, "refused by the rule " + rule
	}
	stored, err := json.Marshal(obj)
	if err != nil {
		return nil, "not storable: " + err.Error()
	}
	return stored, ""
}

// rolloutFuzzDefault drops null fields (the apiserver prunes the nulls of
// fields that are not nullable) and sets each absent field that has a
// default to it, as the apiserver's structural defaulting does.
func rolloutFuzzDefault(v any, s *structuralschema.Structural) {
	if s == nil {
		return
	}
	switch v := v.(type) {
	case map[string]any:
		for k, val := range v {
			if p, ok := s.Properties[k]; val == nil && (!ok || !p.Nullable) {
				delete(v, k)
			}
		}
		for k, p := range s.Properties {
			if _, ok := v[k]; !ok && p.Default.Object != nil {
				v[k] = rolloutFuzzCopy(p.Default.Object)
			}
			if val, ok := v[k]; ok {
				rolloutFuzzDefault(val, &p)
			}
		}
		if s.AdditionalProperties != nil && s.AdditionalProperties.Structural != nil {
			for _, val := range v {
				rolloutFuzzDefault(val, s.AdditionalProperties.Structural)
			}
		}
	case []any:
		for _, item := range v {
			rolloutFuzzDefault(item, s.Items)
		}
	}
}

func rolloutFuzzCopy(v any) any {
	raw, _ := json.Marshal(v)
	var out any
	_ = utiljson.Unmarshal(raw, &out)
	return out
}

// rolloutFuzzCheckRules evaluates the modelled CEL rules of every field of
// v and returns the first that fails, or "".
func rolloutFuzzCheckRules(v any, s *structuralschema.Structural) string {
	if s == nil {
		return ""
	}
	for _, r := range s.XValidations {
		if model, ok := rolloutFuzzRules[r.Rule]; ok && !model(v) {
			return r.Rule
		}
	}
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if p, ok := s.Properties[k]; ok {
				if rule := rolloutFuzzCheckRules(v[k], &p); rule != "" {
					return rule
				}
			} else if s.AdditionalProperties != nil && s.AdditionalProperties.Structural != nil {
				if rule := rolloutFuzzCheckRules(v[k], s.AdditionalProperties.Structural); rule != "" {
					return rule
				}
			}
		}
	case []any:
		for _, item := range v {
			if rule := rolloutFuzzCheckRules(item, s.Items); rule != "" {
				return rule
			}
		}
	}
	return ""
}

// FuzzRolloutSpec decodes the fuzzer's bytes as the body of a request that
// creates a Rollout, and runs on what the apiserver would store what the
// manager runs before it acts: the decoding of the manager's client, its
// spec rules that need no API call (checkSpecRules and checkDefaults:
// queries rendered and parsed, cookies on gRPC routes, a Prometheus for
// every check), the plan's reading of the spec (canary steps and the short
// form, blue-green, the bake time, the analysis interval, the canary's
// replicas), and then a whole release of a new revision in a cluster where
// everything gets ready at once, the checks pass and a person promotes
// every pause. Properties:
//
//   - nothing panics, and the same bytes give the same outcome;
//   - whatever the apiserver admits, the manager can decode (a duration
//     too long for Go, an int32 field given 2^31, would stop its cache);
//   - a spec the manager's rules refuse gets a reason and a message that
//     names the field;
//   - otherwise every traffic weight the plan writes or records is within
//     0..100, every wait is non-negative and at most 8760h (the CRD's
//     bound on every duration), a due timer waits a positive time, the
//     analysis interval is within (0, 8760h], the canary runs between one
//     replica and the primary's size, and the release is promoted (or,
//     with spec.paused, holds with no traffic moved) within a bounded
//     number of decisions.
//
// The bounds on weights and durations come from the CRD (OpenAPI minimum
// and maximum, maxItems, and the CEL rules in rolloutFuzzRules): the
// controller does not check them again, and the fuzzer starts from what the
// apiserver admits, by the CRD file in config/crd/bases.
func FuzzRolloutSpec(f *testing.F) {
	crd := loadRolloutFuzzCRD(f)
	f.Add([]byte(`{"spec":{"targetRef":{"name":"app"},"service":{"port":8080},"routes":[{"name":"app","parentRefs":[{"name":"gw"}]}],` +
		`"strategy":{"canary":{"steps":[{"setWeight":10},{"pause":{"duration":"1m30s"}},{"analysis":{"window":"5m"}},{"pause":{}}]}}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		first := rolloutFuzzRun(t, crd, body)
		if again := rolloutFuzzRun(t, crd, body); again != first {
			t.Fatalf("the same body gave different outcomes:\n--- first\n%s--- again\n%s", first, again)
		}
		lines := strings.Split(strings.TrimSuffix(first, "\n"), "\n")
		t.Logf("%d-byte body: %s", len(body), lines[len(lines)-1])
	})
}

// rolloutFuzzRun runs one body and describes the outcome: why it was
// refused, or the decisions of its release.
func rolloutFuzzRun(t *testing.T, crd *rolloutFuzzCRD, body []byte) string {
	stored, refused := crd.admit(body)
	if refused != "" {
		return refused + "\n"
	}
	// The manager's client decodes as the apiserver's JSON serializer does:
	// field names are case-sensitive.
	var ro backstopv1.Rollout
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(stored, &ro); err != nil {
		t.Fatalf("the apiserver admits a Rollout the manager cannot decode: %v\nstored: %s", err, stored)
	}
	r := &RolloutReconciler{Defaults: Defaults{PrometheusAddress: "http://prometheus:9090"}}
	for _, rule := range []func(*backstopv1.Rollout) *specProblem{checkSpecRules, r.checkDefaults} {
		if p := rule(&ro); p != nil {
			if p.Reason == "" || !strings.Contains(p.Message, "spec.") {
				t.Fatalf("problem %+v has no reason, or a message that names no field", *p)
			}
			return fmt.Sprintf("problem %s: %s\n", p.Reason, p.Message)
		}
	}
	if every := analysisInterval(&ro); every <= 0 || every > rolloutFuzzMaxDuration {
		t.Fatalf("analysis interval %s", every)
	}
	for _, size := range []int32{0, 1, 3, 1000, 1<<31 - 1} {
		primary := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To(size)}}
		if n := canaryReplicas(&ro, nil, primary); n < 1 || n > max(size, 1) {
			t.Fatalf("canary of %d replicas for a primary of %d", n, size)
		}
	}
	return rolloutFuzzRelease(t, r, &ro)
}

// rolloutFuzzRelease releases revision v2 over v1 with the plan the
// reconciler runs (see release), round by round, and checks every
// decision; it returns the decisions.
func rolloutFuzzRelease(t *testing.T, r *RolloutReconciler, ro *backstopv1.Rollout) string {
	t.Helper()
	decide := func(s plan.State, w plan.World, now time.Time) (plan.Decision, int) {
		if ro.Spec.Strategy.BlueGreen != nil {
			cfg := plan.BlueGreenConfigOf(&ro.Spec)
			cfg.Preview = cfg.Preview && hasGeneratedRoute(ro)
			return plan.BlueGreen(cfg, s, w, now), len(plan.BlueGreenStageNames)
		}
		cfg := plan.CanaryConfig(&ro.Spec)
		cfg.Match = cfg.Match && hasGeneratedRoute(ro)
		cfg.Mirror = cfg.Mirror && hasGeneratedRoute(ro)
		return plan.Canary(cfg, s, w, now), len(cfg.Steps)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	s := plan.State{Phase: backstopv1.PhaseIdle, Stable: "v1"}
	primary, routes, gate := "v1", plan.Traffic{}, plan.NoGate
	canaryUp, moved := false, false
	var weights []string
	var longest time.Duration
	var log bytes.Buffer
	summary := func(round int) string {
		return fmt.Sprintf("%s%d decisions, weights %s, longest wait %s\n", log.String(), round+1, strings.Join(weights, " "), longest)
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s\n--- decisions\n%s", fmt.Sprintf(format, args...), log.String())
	}
	for round := 0; ; round++ {
		w := plan.World{TargetRevision: "v2", PrimaryRevision: primary, PrimaryReady: true,
			CanaryReady: canaryUp, CanaryScaled: canaryUp, CanaryDown: !canaryUp,
			Routes:  plan.Routes{Carries: func(t plan.Traffic) bool { return routes == t }, Accepted: true},
			Verdict: plan.Verdict{Result: plan.Pass}, Gate: gate}
		d, steps := decide(s, w, now)
		fmt.Fprintf(&log, "%s %s %s -> %s step=%d w=%d after=%s", now.Sub(start), s.Phase, d.Action, d.Next.Phase, d.Next.Step, d.Next.Weight, d.RequeueAfter)
		if d.Event != nil {
			fmt.Fprintf(&log, " %s: %s", d.Event.Reason, d.Event.Message)
		}
		log.WriteString("\n")
		// A release runs its steps a few decisions each, and a promotion
		// and a bake time a few more.
		if limit := 8*steps + 64; round > limit {
			fail("no end after %d decisions", limit)
		}
		if a := d.Action; a.Kind == plan.ActSetTraffic {
			if a.Weight < 0 || a.Weight > 100 {
				fail("traffic weight %d written", a.Weight)
			}
			if split := r.split(ro, a.Traffic); split.CanaryWeight != a.Weight || split.MirrorPercent < 0 || split.MirrorPercent > 100 {
				fail("traffic %s splits as %+v", a.Traffic, split)
			}
			moved = moved || a.Weight > 0
			weights = append(weights, a.Traffic.String())
		}
		longest = max(longest, d.RequeueAfter)
		if d.Next.Weight < 0 || d.Next.Weight > 100 {
			fail("weight %d recorded", d.Next.Weight)
		}
		if d.RequeueAfter < 0 || d.RequeueAfter > rolloutFuzzMaxDuration {
			fail("waits %s", d.RequeueAfter)
		}
		if d.Due && d.RequeueAfter <= 0 {
			fail("a due timer waits %s", d.RequeueAfter)
		}
		if e := d.Event; e != nil && (e.Reason == "" || e.Message == "") {
			fail("an Event without a reason or a message: %+v", *e)
		}

		switch a := d.Action; a.Kind {
		case plan.ActCopyToPrimary, plan.ActRestorePrevious:
			primary = a.Revision
		case plan.ActScaleCanaryUp:
			canaryUp = true
		case plan.ActScaleCanaryDown:
			canaryUp = false
		case plan.ActSetTraffic:
			routes = a.Traffic
		}
		s = d.Next
		if d.GateDone {
			gate = plan.NoGate
		}
		switch {
		case d.Settled && s.Phase == backstopv1.PhasePaused && ro.Spec.Paused:
			if moved {
				fail("traffic moved to the canary while spec.paused is set")
			}
			return summary(round)
		case d.Settled && s.Phase == backstopv1.PhasePaused:
			gate = plan.GatePromote // a person promotes the pause
		case d.Settled:
			if s.Phase != backstopv1.PhaseSucceeded || primary != "v2" || s.Previous != "" {
				fail("settled in phase %s with the primary at %s: the release passed every check", s.Phase, primary)
			}
			return summary(round)
		}
		if d.Settled {
			now = now.Add(time.Second)
		} else {
			now = now.Add(d.RequeueAfter)
		}
	}
}

// TestRolloutFuzzCorpus runs FuzzRolloutSpec's corpus through the same
// checks and prints what became of each body: refused by the apiserver
// (the schema, or which CEL rule), refused by the manager's rules, or
// released (in how many decisions, to what weights, with the longest
// wait). It also proves that every CEL rule the fuzzer models is still in
// the CRD, word for word, so the model cannot drift from it unnoticed, and
// prints how many of the CRD's rules are modelled.
func TestRolloutFuzzCorpus(t *testing.T) {
	crd := loadRolloutFuzzCRD(t)
	modelled := 0
	for rule := range rolloutFuzzRules {
		n, ok := crd.rules[rule]
		if !ok {
			t.Errorf("the modelled rule %q is not in the CRD any more", rule)
		}
		modelled += n
	}
	total := 0
	for _, n := range crd.rules {
		total += n
	}
	t.Logf("the CRD carries %d CEL rules (%d distinct) on its fields; %d of them, %d distinct, are modelled", total, len(crd.rules), modelled, len(rolloutFuzzRules))

	corpus := RolloutFuzzCorpus(t)
	names := make([]string, 0, len(corpus))
	for name := range corpus {
		names = append(names, name)
	}
	slices.Sort(names)
	counts := map[string]int{}
	for _, name := range names {
		out := rolloutFuzzRun(t, crd, corpus[name])
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		kind := "planned"
		switch {
		case strings.HasPrefix(out, "refused"), strings.HasPrefix(out, "not "):
			kind = "refused by the apiserver"
		case strings.HasPrefix(out, "problem"):
			kind = "refused by the manager"
		}
		counts[kind]++
		if kind == "planned" {
			t.Logf("%s: planned, %s", name, lines[len(lines)-1])
		} else {
			t.Logf("%s: %s", name, lines[0])
		}
	}
	t.Logf("%d bodies: %d refused by the apiserver, %d by the manager's rules, %d planned", len(corpus),
		counts["refused by the apiserver"], counts["refused by the manager"], counts["planned"])
}

// rolloutFuzzCorpusBody reads the one []byte of a corpus file.
func rolloutFuzzCorpusBody(t *testing.T, name string, raw []byte) []byte {
	t.Helper()
	lines := strings.SplitN(strings.TrimSpace(string(raw)), "\n", 2)
	if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
		t.Fatalf("%s is not a corpus file of one []byte", name)
	}
	body, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return []byte(body)
}

// RolloutFuzzAdmit is the fuzzer's model of the apiserver, for the external
// test that compares it with the real one: "" when the model admits body,
// or why it refuses it.
func RolloutFuzzAdmit(tb testing.TB, body []byte) string {
	_, refused := loadRolloutFuzzCRD(tb).admit(body)
	return refused
}

// RolloutFuzzCorpus reads FuzzRolloutSpec's corpus: each file's body by its
// name.
func RolloutFuzzCorpus(tb testing.TB) map[string][]byte {
	t, ok := tb.(*testing.T)
	if !ok {
		tb.Fatal("RolloutFuzzCorpus needs a *testing.T")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzRolloutSpec")
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	corpus := map[string][]byte{}
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		corpus[e.Name()] = rolloutFuzzCorpusBody(t, e.Name(), raw)
	}
	return corpus
}
