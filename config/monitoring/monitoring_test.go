// The tests of this package prove the monitoring files against the
// product: every query parses, names only metrics the manager registers,
// and uses the label values the API defines; the alerts fire on the
// series they are about; Grafana and Prometheus can load the files.
package monitoring_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	// The packages that register the manager's metrics in their init.
	_ "backstop.dev/backstop/analysis"
	backstopv1 "backstop.dev/backstop/api/v1alpha1"
	_ "backstop.dev/backstop/controllers"
)

// promQL parses like Prometheus does by default.
var promQL = parser.NewParser(parser.Options{})

// prometheusRule is the part of a PrometheusRule the tests read; unknown
// fields fail the parse.
type prometheusRule struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Metadata   map[string]any     `json:"metadata"`
	Spec       prometheusRuleSpec `json:"spec"`
}

type prometheusRuleSpec struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	Targets    []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name       string      `json:"name"`
	Type       string      `json:"type"`
	Query      any         `json:"query"` // a string, or an object with a query
	Datasource *datasource `json:"datasource"`
}

// query is a PromQL expression of one of the files, and where it is.
type query struct {
	where string
	expr  string
}

func readRule(t *testing.T) prometheusRule {
	t.Helper()
	data, err := os.ReadFile("prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var r prometheusRule
	if err := yaml.UnmarshalStrict(data, &r); err != nil {
		t.Fatalf("prometheusrule.yaml: %v", err)
	}
	if r.APIVersion != "monitoring.coreos.com/v1" || r.Kind != "PrometheusRule" {
		t.Fatalf("prometheusrule.yaml is a %s %s; want a monitoring.coreos.com/v1 PrometheusRule", r.APIVersion, r.Kind)
	}
	return r
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	return d
}

// allPanels is every panel of d, rows and the panels of collapsed rows
// included.
func allPanels(d dashboard) []panel {
	var all []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return all
}

// alerts are the alerting rules of r by name.
func alerts(r prometheusRule) map[string]rule {
	m := map[string]rule{}
	for _, g := range r.Spec.Groups {
		for _, ru := range g.Rules {
			if ru.Alert != "" {
				m[ru.Alert] = ru
			}
		}
	}
	return m
}

// labelValues matches the query of a Grafana variable that lists the
// values of a label.
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// queries are every PromQL expression of the rule and the dashboard, the
// dashboard's variables included.
func queries(t *testing.T) []query {
	t.Helper()
	var qs []query
	for _, g := range readRule(t).Spec.Groups {
		for i, ru := range g.Rules {
			qs = append(qs, query{fmt.Sprintf("prometheusrule.yaml: group %s, rule %d (%s%s)", g.Name, i, ru.Alert, ru.Record), ru.Expr})
		}
	}
	d := readDashboard(t)
	for _, p := range allPanels(d) {
		for _, tg := range p.Targets {
			qs = append(qs, query{fmt.Sprintf("grafana-dashboard.json: panel %q, target %s", p.Title, tg.RefID), tg.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if obj, ok := v.Query.(map[string]any); ok {
			q, _ = obj["query"].(string)
		}
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("grafana-dashboard.json: variable %s: query %q is not label_values(SELECTOR, LABEL)", v.Name, q)
			continue
		}
		qs = append(qs, query{"grafana-dashboard.json: variable " + v.Name, m[1]})
	}
	if len(qs) == 0 {
		t.Fatal("the files hold no queries")
	}
	return qs
}

// grafanaVariable is a use of a variable in a dashboard query: $name,
// ${name} or ${name:format}.
var grafanaVariable = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// grafanaBuiltins are the interval variables Grafana sets for a query,
// with a value for parsing.
var grafanaBuiltins = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "1m",
	"__range":         "1h",
}

// expand replaces the Grafana variables of expr with plain values; it
// fails on a variable the dashboard does not define.
func expand(expr string, defined map[string]bool) (string, error) {
	var unknown []string
	out := grafanaVariable.ReplaceAllStringFunc(expr, func(use string) string {
		m := grafanaVariable.FindStringSubmatch(use)
		name := m[1] + m[2]
		if v, ok := grafanaBuiltins[name]; ok {
			return v
		}
		if defined[name] {
			return "x"
		}
		unknown = append(unknown, use)
		return use
	})
	if unknown != nil {
		return "", fmt.Errorf("undefined variables %v", unknown)
	}
	return out, nil
}

// parsed is every query parsed, with the dashboard's variables replaced;
// a query that does not parse fails the test.
func parsed(t *testing.T) map[query]parser.Expr {
	t.Helper()
	defined := map[string]bool{}
	for _, v := range readDashboard(t).Templating.List {
		defined[v.Name] = true
	}
	out := map[query]parser.Expr{}
	for _, q := range queries(t) {
		expr, err := expand(q.expr, defined)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		e, err := promQL.ParseExpr(expr)
		if err != nil {
			t.Errorf("%s: %v\n%s", q.where, err, expr)
			continue
		}
		out[q] = e
	}
	return out
}

// selectors are the vector selectors of e, with their metric names.
func selectors(e parser.Expr) []*parser.VectorSelector {
	var vs []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if v, ok := n.(*parser.VectorSelector); ok {
			vs = append(vs, v)
		}
		return nil
	})
	return vs
}

func metricName(v *parser.VectorSelector) string {
	if v.Name != "" {
		return v.Name
	}
	for _, m := range v.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// registered says whether the manager's packages registered a metric
// called name on controller-runtime's registry. Gather shows only the
// metrics that have a value yet, so it asks the registry instead: it
// refuses a second metric of a registered name with other help.
func registered(name string) (bool, error) {
	probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "A probe of config/monitoring's tests."})
	err := metrics.Registry.Register(probe)
	switch {
	case err == nil:
		metrics.Registry.Unregister(probe)
		return false, nil
	case strings.Contains(err.Error(), "previously registered descriptor with the same fully-qualified name"):
		return true, nil
	}
	return false, err
}

// histogramSuffixes are the series a histogram exposes besides its name.
var histogramSuffixes = []string{"_bucket", "_sum", "_count"}

// checkMetric fails unless the manager registers name, or name is a
// series of a histogram it registers.
func checkMetric(name string, gathered map[string]*dto.MetricFamily) error {
	ok, err := registered(name)
	if err != nil || ok {
		return err
	}
	for _, suffix := range histogramSuffixes {
		base, cut := strings.CutSuffix(name, suffix)
		if !cut {
			continue
		}
		ok, err := registered(base)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		// The type shows once the histogram has a value.
		if f := gathered[base]; f != nil && f.GetType() != dto.MetricType_HISTOGRAM {
			return fmt.Errorf("%s is a %s, not a histogram", base, f.GetType())
		}
		return nil
	}
	return fmt.Errorf("the manager registers no metric %s", name)
}

func gather(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*dto.MetricFamily{}
	for _, f := range families {
		m[f.GetName()] = f
	}
	return m
}

func TestEveryQueryParses(t *testing.T) {
	qs := queries(t)
	if got := parsed(t); len(got) != len(qs) {
		t.Errorf("%d of %d queries parsed", len(got), len(qs))
	}
}

func TestEveryQueryReadsMetricsTheManagerRegisters(t *testing.T) {
	gathered := gather(t)
	for q, e := range parsed(t) {
		vs := selectors(e)
		if len(vs) == 0 {
			t.Errorf("%s reads no metric", q.where)
		}
		for _, v := range vs {
			name := metricName(v)
			if name == "" {
				t.Errorf("%s: selector %s names no metric", q.where, v)
				continue
			}
			if err := checkMetric(name, gathered); err != nil {
				t.Errorf("%s: %v", q.where, err)
			}
		}
	}
}

// TestTheMetricCheckCatchesMisspellings: the check above accepts the
// metrics and histogram series the manager has and refuses near misses.
func TestTheMetricCheckCatchesMisspellings(t *testing.T) {
	gathered := gather(t)
	for name, want := range map[string]bool{
		"backstop_rollout_phase":                    true,
		"backstop_step_duration_seconds_bucket":     true,
		"backstop_release_duration_seconds_count":   true,
		"controller_runtime_reconcile_errors_total": true,
		"workqueue_depth":                           true,
		"backstop_rollout_phases":                   false,
		"backstop_rollbacks":                        false,
		"backstop_step_duration_bucket":             false,
		"controller_runtime_reconcile_error_total":  false,
	} {
		err := checkMetric(name, gathered)
		if got := err == nil; got != want {
			t.Errorf("checkMetric(%s) = %v; want accepted %v", name, err, want)
		}
	}
}

// TestLabelValuesAreTheAPIs: the phases and revert states the queries
// select are the API's, so a typo cannot select nothing forever.
func TestLabelValuesAreTheAPIs(t *testing.T) {
	valid := map[string][]string{
		"phase": {string(backstopv1.PhaseInitializing), string(backstopv1.PhaseIdle), string(backstopv1.PhaseProgressing),
			string(backstopv1.PhasePaused), string(backstopv1.PhasePromoting), string(backstopv1.PhaseSucceeded),
			string(backstopv1.PhaseRollingBack), string(backstopv1.PhaseRolledBack)},
		"state": {string(backstopv1.RevertPushed), string(backstopv1.RevertConflict), string(backstopv1.RevertFailed),
			string(backstopv1.RevertSkipped)},
	}
	alternatives := regexp.MustCompile(`^\w+(\|\w+)*$`)
	seen := map[string]bool{}
	for q, e := range parsed(t) {
		for _, v := range selectors(e) {
			for _, m := range v.LabelMatchers {
				values, ok := valid[m.Name]
				if !ok {
					continue
				}
				seen[m.Name] = true
				switch {
				case m.Type == labels.MatchEqual:
				case m.Type == labels.MatchRegexp && alternatives.MatchString(m.Value):
				default:
					t.Errorf("%s: %s: select %s by = or by =~ with alternatives", q.where, m, m.Name)
					continue
				}
				for _, value := range strings.Split(m.Value, "|") {
					if !slices.Contains(values, value) {
						t.Errorf("%s: %s: %q is not one of %v", q.where, m, value, values)
					}
				}
			}
		}
	}
	for name := range valid {
		if !seen[name] {
			t.Errorf("no query selects by %s; the test checks nothing", name)
		}
	}
}

func TestEveryAlertHasASeveritySummaryAndDescription(t *testing.T) {
	all := alerts(readRule(t))
	want := []string{"BackstopReleaseStuck", "BackstopRolloutStuckInTransition", "BackstopRolloutRolledBack",
		"BackstopRevertFailing", "BackstopReconcileErrors", "BackstopPrometheusQueriesFailing"}
	for _, name := range want {
		if _, ok := all[name]; !ok {
			t.Errorf("no alert %s", name)
		}
	}
	for name, ru := range all {
		if s := ru.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
			t.Errorf("%s: severity %q; want critical, warning or info", name, s)
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(ru.Annotations[a]) == "" {
				t.Errorf("%s has no %s", name, a)
			}
		}
		if ru.For != "" {
			if _, err := time.ParseDuration(ru.For); err != nil {
				t.Errorf("%s: for: %v", name, err)
			}
		}
	}
}

// ruleTest is a test of promtool's `test rules`.
type ruleTest struct {
	Name        string        `json:"name"`
	Interval    string        `json:"interval"`
	InputSeries []inputSeries `json:"input_series"`
	AlertTests  []alertTest   `json:"alert_rule_test,omitempty"`
	ExprTests   []exprTest    `json:"promql_expr_test,omitempty"`
}

// inputSeries is a series and its samples, one a minute from time 0, in
// the expanding notation of Prometheus's rule tests (1x3 is 1 1 1 1,
// 0+2x2 is 0 2 4, _x2 is two missing samples).
type inputSeries struct {
	Series string `json:"series"`
	Values string `json:"values"`
}

type alertTest struct {
	EvalTime  string          `json:"eval_time"`
	Alertname string          `json:"alertname"`
	ExpAlerts []expectedAlert `json:"exp_alerts"`
}

type expectedAlert struct {
	ExpLabels map[string]string `json:"exp_labels"`
}

type exprTest struct {
	Expr       string           `json:"expr"`
	EvalTime   string           `json:"eval_time"`
	ExpSamples []expectedSample `json:"exp_samples"`
}

type expectedSample struct {
	Labels string  `json:"labels"`
	Value  float64 `json:"value"`
}

// promtoolTest runs tests with `promtool test rules` on the rule groups,
// their annotations left out: the tests are about when the alerts fire.
func promtoolTest(t *testing.T, tests []ruleTest) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian package prometheus)")
	}
	spec := readRule(t).Spec
	for g := range spec.Groups {
		for r := range spec.Groups[g].Rules {
			spec.Groups[g].Rules[r].Annotations = nil
		}
	}
	dir := t.TempDir()
	rules, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	for i := range tests {
		if tests[i].Interval == "" {
			tests[i].Interval = "1m"
		}
	}
	file := map[string]any{"rule_files": []string{"rules.yaml"}, "evaluation_interval": "1m", "tests": tests}
	unit, err := yaml.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"rules.yaml": rules, "tests.yaml": unit} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(promtool, "test", "rules", "tests.yaml")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool test rules: %v\n%s\ntests:\n%s", err, out, unit)
	}
}

// TestAlertsFire: each alert fires, after its `for`, on series like the
// manager's that it is about, and not on others.
func TestAlertsFire(t *testing.T) {
	all := alerts(readRule(t))
	// fires is the alert name firing with labels and the rule's own.
	fires := func(name string, labels ...map[string]string) alertTest {
		ru, ok := all[name]
		if !ok {
			t.Fatalf("no alert %s", name)
		}
		at := alertTest{Alertname: name, ExpAlerts: []expectedAlert{}}
		for _, l := range labels {
			merged := map[string]string{}
			for k, v := range ru.Labels {
				merged[k] = v
			}
			for k, v := range l {
				merged[k] = v
			}
			at.ExpAlerts = append(at.ExpAlerts, expectedAlert{ExpLabels: merged})
		}
		return at
	}
	at := func(when string, a alertTest) alertTest {
		a.EvalTime = when
		return a
	}
	cart := map[string]string{"namespace": "shop", "rollout": "cart"}
	phase := func(rollout, phase, values string) inputSeries {
		return inputSeries{fmt.Sprintf(`backstop_rollout_phase{namespace="shop", rollout=%q, phase=%q}`, rollout, phase), values}
	}
	promtoolTest(t, []ruleTest{{
		Name: "a release that pauses and resumes is one release, stuck after an hour",
		InputSeries: []inputSeries{
			phase("cart", "Progressing", "1x30 0x60"),
			phase("cart", "Paused", "0x30 1x60"),
			phase("till", "Progressing", "0x90"),
			phase("till", "Idle", "1x90"),
		},
		AlertTests: []alertTest{
			at("45m", fires("BackstopReleaseStuck")),
			at("70m", fires("BackstopReleaseStuck", cart)),
		},
	}, {
		Name: "a rollback that does not end",
		InputSeries: []inputSeries{
			phase("cart", "RollingBack", "1x30"),
			phase("till", "RollingBack", "0x30"),
			phase("till", "Progressing", "1x30"),
		},
		AlertTests: []alertTest{
			at("10m", fires("BackstopRolloutStuckInTransition")),
			at("20m", fires("BackstopRolloutStuckInTransition", cart)),
		},
	}, {
		Name: "a rolled-back Rollout",
		InputSeries: []inputSeries{
			phase("cart", "RolledBack", "0x10 1x20"),
			phase("till", "RolledBack", "0x30"),
			phase("till", "Succeeded", "1x30"),
		},
		AlertTests: []alertTest{
			at("5m", fires("BackstopRolloutRolledBack")),
			at("20m", fires("BackstopRolloutRolledBack", cart)),
		},
	}, {
		Name: "the first Conflict since the manager started, for 30 minutes",
		InputSeries: []inputSeries{
			{`backstop_reverts_total{state="Pushed"}`, "1+1x60"},
			{`backstop_reverts_total{state="Conflict"}`, "_x10 1x50"},
		},
		AlertTests: []alertTest{
			at("5m", fires("BackstopRevertFailing")),
			at("15m", fires("BackstopRevertFailing", map[string]string{"state": "Conflict"})),
			at("50m", fires("BackstopRevertFailing")),
		},
	}, {
		Name: "a Failed revert after earlier ones",
		InputSeries: []inputSeries{
			{`backstop_reverts_total{state="Failed"}`, "1x60 2x10"},
		},
		AlertTests: []alertTest{
			at("45m", fires("BackstopRevertFailing")),
			at("65m", fires("BackstopRevertFailing", map[string]string{"state": "Failed"})),
		},
	}, {
		Name: "reverts that were pushed",
		InputSeries: []inputSeries{
			{`backstop_reverts_total{state="Pushed"}`, "_x10 1+1x50"},
			{`backstop_reverts_total{state="Failed"}`, "3x60"},
		},
		AlertTests: []alertTest{at("45m", fires("BackstopRevertFailing"))},
	}, {
		Name: "errors of the Rollout controller, not of others",
		InputSeries: []inputSeries{
			{`controller_runtime_reconcile_errors_total{controller="rollout"}`, "0+1x40"},
			{`controller_runtime_reconcile_errors_total{controller="other"}`, "0+1x40"},
		},
		AlertTests: []alertTest{
			at("10m", fires("BackstopReconcileErrors")),
			at("25m", fires("BackstopReconcileErrors", map[string]string{"controller": "rollout"})),
		},
	}, {
		Name: "errors that stopped",
		InputSeries: []inputSeries{
			{`controller_runtime_reconcile_errors_total{controller="rollout"}`, "0+1x10 10x40"},
		},
		AlertTests: []alertTest{at("40m", fires("BackstopReconcileErrors"))},
	}, {
		Name: "queries to Prometheus that fail, then succeed",
		InputSeries: []inputSeries{
			{`backstop_prometheus_queries_total{result="ok"}`, "0+5x60"},
			{`backstop_prometheus_queries_total{result="error"}`, "0+2x30 60x30"},
		},
		AlertTests: []alertTest{
			at("20m", fires("BackstopPrometheusQueriesFailing", map[string]string{})),
			at("50m", fires("BackstopPrometheusQueriesFailing")),
		},
	}})
}

// TestDashboardCountsWhatHappenedInTheRange: the rollback and duration
// panels count a series that first appeared within the range with its
// whole value, which increase() alone would miss.
func TestDashboardCountsWhatHappenedInTheRange(t *testing.T) {
	d := readDashboard(t)
	target := func(title, refID string) string {
		for _, p := range allPanels(d) {
			for _, tg := range p.Targets {
				if p.Title == title && tg.RefID == refID {
					return strings.ReplaceAll(tg.Expr, "$__range", "1h")
				}
			}
		}
		t.Fatalf("no panel %q with a target %s", title, refID)
		return ""
	}
	bucket := func(le, values string) inputSeries {
		return inputSeries{fmt.Sprintf(`backstop_release_duration_seconds_bucket{strategy="canary", outcome="RolledBack", le=%q}`, le), values}
	}
	promtoolTest(t, []ruleTest{{
		Name: "rollbacks: one reason from before the range, one new in it",
		InputSeries: []inputSeries{
			{`backstop_rollbacks_total{reason="AnalysisFailed"}`, "4x100"},
			{`backstop_rollbacks_total{reason="Aborted"}`, "_x40 1x10 2x50"},
		},
		ExprTests: []exprTest{{Expr: target("Rollbacks by reason", "A"), EvalTime: "90m", ExpSamples: []expectedSample{
			{Labels: `{reason="Aborted"}`, Value: 2},
			{Labels: `{reason="AnalysisFailed"}`, Value: 0},
		}}},
	}, {
		Name: "release duration: one release, rolled back after 30 to 60 s",
		InputSeries: []inputSeries{
			bucket("30", "_x40 0x50"),
			bucket("60", "_x40 1x50"),
			bucket("+Inf", "_x40 1x50"),
		},
		ExprTests: []exprTest{{Expr: target("Release duration", "A"), EvalTime: "90m", ExpSamples: []expectedSample{
			{Labels: `{strategy="canary", outcome="RolledBack"}`, Value: 45},
		}}},
	}})
}

func TestDashboardQueriesTheChosenDataSource(t *testing.T) {
	d := readDashboard(t)
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v := vars["datasource"]; v.Type != "datasource" || v.Query != "prometheus" {
		t.Errorf("variable datasource: %+v; want a datasource variable of Prometheus data sources", v)
	}
	for _, name := range []string{"namespace", "rollout"} {
		if v, ok := vars[name]; !ok || v.Type != "query" {
			t.Errorf("variable %s: %+v; want a query variable", name, v)
		}
	}
	chosen := func(ds *datasource) bool { return ds != nil && ds.Type == "prometheus" && ds.UID == "${datasource}" }
	for _, v := range d.Templating.List {
		if v.Type == "query" && !chosen(v.Datasource) {
			t.Errorf("variable %s queries %+v; want ${datasource}", v.Name, v.Datasource)
		}
	}
	panels := 0
	for _, p := range allPanels(d) {
		if p.Type == "row" {
			continue
		}
		panels++
		if !chosen(p.Datasource) {
			t.Errorf("panel %q queries %+v; want ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !chosen(tg.Datasource) {
				t.Errorf("panel %q, target %s queries %+v; want ${datasource}", p.Title, tg.RefID, tg.Datasource)
			}
		}
	}
	if panels == 0 {
		t.Error("the dashboard has no panels")
	}
}

// TestPromtoolAcceptsTheRules runs Prometheus's own check on the rule
// groups, as Prometheus loads them from the PrometheusRule.
func TestPromtoolAcceptsTheRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian package prometheus)")
	}
	spec, err := yaml.Marshal(readRule(t).Spec)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(file, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("SUCCESS: %d rules found", len(alerts(readRule(t)))); !strings.Contains(string(out), want) {
		t.Errorf("promtool check rules said %q; want %q", out, want)
	}
}

// TestKustomizationShipsEveryFile: the kustomization lists the two
// resources and generates the dashboard's ConfigMap with the label the
// Grafana sidecar looks for.
func TestKustomizationShipsEveryFile(t *testing.T) {
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources          []string `json:"resources"`
		ConfigMapGenerator []struct {
			Name    string   `json:"name"`
			Files   []string `json:"files"`
			Options struct {
				Labels map[string]string `json:"labels"`
			} `json:"options"`
		} `json:"configMapGenerator"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatal(err)
	}
	if want := []string{"servicemonitor.yaml", "prometheusrule.yaml"}; !slices.Equal(k.Resources, want) {
		t.Errorf("resources %v; want %v", k.Resources, want)
	}
	if len(k.ConfigMapGenerator) != 1 {
		t.Fatalf("configMapGenerator %+v; want one ConfigMap", k.ConfigMapGenerator)
	}
	g := k.ConfigMapGenerator[0]
	if !slices.Equal(g.Files, []string{"grafana-dashboard.json"}) || g.Options.Labels["grafana_dashboard"] != "1" {
		t.Errorf("configMapGenerator %+v; want grafana-dashboard.json labelled grafana_dashboard: \"1\"", g)
	}
	for _, f := range append(k.Resources, g.Files...) {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
}

// TestServiceMonitorScrapesTheMetricsService: the ServiceMonitor selects
// the labels of config/manager's metrics Service and scrapes its port by
// name.
func TestServiceMonitorScrapesTheMetricsService(t *testing.T) {
	var sm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Endpoints []struct {
				Port string `json:"port"`
				Path string `json:"path"`
			} `json:"endpoints"`
		} `json:"spec"`
	}
	var svc struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Ports []struct {
				Name string `json:"name"`
			} `json:"ports"`
		} `json:"spec"`
	}
	for file, into := range map[string]any{"servicemonitor.yaml": &sm, "../manager/metrics_service.yaml": &svc} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(data, into); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	if sm.APIVersion != "monitoring.coreos.com/v1" || sm.Kind != "ServiceMonitor" {
		t.Errorf("servicemonitor.yaml is a %s %s", sm.APIVersion, sm.Kind)
	}
	if len(sm.Spec.Selector.MatchLabels) == 0 {
		t.Error("the ServiceMonitor selects every Service")
	}
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svc.Metadata.Labels[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s; the metrics Service has %s=%q", k, v, k, svc.Metadata.Labels[k])
		}
	}
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, p.Name)
	}
	if len(sm.Spec.Endpoints) != 1 || !slices.Contains(ports, sm.Spec.Endpoints[0].Port) || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("endpoints %+v; want /metrics on one of the Service's ports %v", sm.Spec.Endpoints, ports)
	}
}
