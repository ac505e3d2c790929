package analysis

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

func renderTestVars(args map[string]string) QueryVars {
	return QueryVars{
		Namespace:      "shop",
		Name:           "checkout",
		Target:         "checkout",
		Primary:        "checkout-primary",
		Canary:         "checkout-canary",
		Service:        "checkout",
		PrimaryService: "checkout-primary",
		CanaryService:  "checkout-canary",
		Window:         5 * time.Minute,
		Interval:       time.Minute,
		Args:           args,
	}
}

// renderTestMatcher returns the matcher on label name in the query's only
// vector selector.
func renderTestMatcher(t *testing.T, query, name string) *labels.Matcher {
	t.Helper()
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(query)
	if err != nil {
		t.Fatalf("rendered query %q does not parse: %v", query, err)
	}
	var found []*labels.Matcher
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			for _, m := range vs.LabelMatchers {
				if m.Name == name {
					found = append(found, m)
				}
			}
		}
		return nil
	})
	if len(found) != 1 {
		t.Fatalf("query %q has %d matchers on %q, want 1", query, len(found), name)
	}
	return found[0]
}

// renderTestSameShape checks that got has the same shape as want.
func renderTestSameShape(t *testing.T, got, want string) {
	t.Helper()
	p := parser.NewParser(parser.Options{})
	g, err := p.ParseExpr(got)
	if err != nil {
		t.Fatalf("query %q does not parse: %v", got, err)
	}
	w, err := p.ParseExpr(want)
	if err != nil {
		t.Fatalf("query %q does not parse: %v", want, err)
	}
	if d := renderShapeDiff(renderShape(w), renderShape(g)); d != "" {
		t.Fatalf("query %q has another shape than %q: %s", got, want, d)
	}
}

func TestRenderQuery(t *testing.T) {
	const errorRatio = `sum(rate(http_requests_total{namespace="{{.Namespace}}",pod=~"{{.Canary}}-.*",code=~"5.."}[{{.Window}}])) / sum(rate(http_requests_total{namespace="{{.Namespace}}",pod=~"{{.Canary}}-.*"}[{{.Window}}]))`
	hostile := []string{
		`x"} or vector(1) #`,
		`x"}) or on() vector(1) or sum({l="`,
		"x\"}\n# comment\nor vector(1)",
		"x\r\n) or vector(1)",
		`x\`,
		`\`,
		`x\"`,
		`x'} or vector(1) #`,
		"x`} or vector(1) #",
		"ünïcødé ✓ 日本",
		"\u2028\u0085\u00a0\u200b\ufeff",
		"\ufffd",
		"\xff\xfe not utf-8",
		"\x00\x01\x1b[31m\x7f",
		`\x27\u0041\n`,
		"",
	}

	type tc struct {
		name   string
		query  string
		vars   QueryVars
		want   string // exact rendering, if set
		reason string // RenderError reason, if an error is expected
		msg    string // a part of the error message
		check  func(t *testing.T, query string)
	}
	tests := []tc{
		{
			name:  "error ratio",
			query: errorRatio,
			vars:  renderTestVars(nil),
			want:  `sum(rate(http_requests_total{namespace="shop",pod=~"checkout-canary-.*",code=~"5.."}[5m])) / sum(rate(http_requests_total{namespace="shop",pod=~"checkout-canary-.*"}[5m]))`,
		},
		{
			name:  "latency quantile with window and interval",
			query: `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service="{{.CanaryService}}",route="{{.Args.route}}"}[{{.Window}}] offset {{.Interval}}))) > {{.Args.threshold}}`,
			vars: func() QueryVars {
				v := renderTestVars(map[string]string{"route": "/api/v1/orders", "threshold": "0.25"})
				v.Window = 90 * time.Minute
				v.Interval = 30 * time.Second
				return v
			}(),
			want: `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service="checkout-canary",route="/api/v1/orders"}[1h30m] offset 30s))) > 0.25`,
		},
		{
			name:  "all names",
			query: `up{a="{{.Namespace}}",b="{{.Name}}",c="{{.Target}}",d="{{.Primary}}",e="{{.Canary}}",f="{{.Service}}",g="{{.PrimaryService}}",h="{{.CanaryService}}"}`,
			vars:  renderTestVars(nil),
			want:  `up{a="shop",b="checkout",c="checkout",d="checkout-primary",e="checkout-canary",f="checkout",g="checkout-primary",h="checkout-canary"}`,
		},
		{
			name:  "quote and brace in a label value",
			query: `up{l="{{.Args.v}}"}`,
			vars:  renderTestVars(map[string]string{"v": `a"}b`}),
			want:  `up{l="a\"}b"}`,
			check: func(t *testing.T, q string) {
				if m := renderTestMatcher(t, q, "l"); m.Value != `a"}b` {
					t.Errorf("matcher value %q, want %q", m.Value, `a"}b`)
				}
			},
		},
		{
			name:  "escapes",
			query: `up{l="{{.Args.v}}"}`,
			vars:  renderTestVars(map[string]string{"v": "\\\"'`\n\r\t\x00\u2028\ufffd\xff"}),
			want:  `up{l="\\\"\x27\x60\n\r\t\x00\u2028\ufffd\xff"}`,
		},
		{
			name:  "metric name arg",
			query: `sum(rate({{.Args.metric}}_total{namespace="{{.Namespace}}"}[5m]))`,
			vars:  renderTestVars(map[string]string{"metric": "job:http_requests"}),
			want:  `sum(rate(job:http_requests_total{namespace="shop"}[5m]))`,
		},
		{
			name:  "number arg",
			query: `up > {{.Args.threshold}}`,
			vars:  renderTestVars(map[string]string{"threshold": "-1.5e3"}),
			want:  `up > -1.5e3`,
		},
		{
			name:  "duration arg",
			query: `rate(up[{{.Args.range}}])`,
			vars:  renderTestVars(map[string]string{"range": "1h30m"}),
			want:  `rate(up[1h30m])`,
		},
		{
			name:  "number used as a range",
			query: `rate(up[{{.Args.range}}])`,
			vars:  renderTestVars(map[string]string{"range": "300"}),
			want:  `rate(up[300])`,
		},
		{
			name:  "label name arg",
			query: `sum by ({{.Args.by}}) (up)`,
			vars:  renderTestVars(map[string]string{"by": "route"}),
			want:  `sum by (route) (up)`,
		},
		{
			name:  "regex function",
			query: `up{l=~"{{regex .Args.v}}"}`,
			vars:  renderTestVars(map[string]string{"v": `a.b"c\d(e)*`}),
			want:  `up{l=~"a\\.b\"c\\\\d\\(e\\)\\*"}`,
			check: func(t *testing.T, q string) {
				m := renderTestMatcher(t, q, "l")
				if m.Type != labels.MatchRegexp {
					t.Fatalf("matcher type %v", m.Type)
				}
				lm, err := labels.NewMatcher(m.Type, m.Name, m.Value)
				if err != nil {
					t.Fatal(err)
				}
				for s, want := range map[string]bool{
					`a.b"c\d(e)*`:  true,
					`aXb"c\d(e)*`:  false,
					`a.b"c\d(e)`:   false,
					`a.b"c\d(e)*x`: false,
					`a.b"c\d(ee)`:  false,
				} {
					if lm.Matches(s) != want {
						t.Errorf("regex %q matches %q: %v, want %v", lm.Value, s, !want, want)
					}
				}
			},
		},
		{
			name:  "regex function on a name and template text",
			query: `up{pod=~"{{regex .Canary}}-[a-z0-9]+",x=~"{{regex "a.b"}}"}`,
			vars:  renderTestVars(nil),
			want:  `up{pod=~"checkout-canary-[a-z0-9]+",x=~"a\\.b"}`,
		},
		{
			name:  "branch on a value",
			query: `{{if eq .Args.mode "sum"}}sum(up){{else}}up{{end}}`,
			vars:  renderTestVars(map[string]string{"mode": "sum"}),
			want:  `sum(up)`,
		},
		{
			name:  "empty arg is false",
			query: `{{if .Args.v}}sum(up){{else}}up{{end}}`,
			vars:  renderTestVars(map[string]string{"v": ""}),
			want:  `up`,
		},
		{
			name:  "arg with a dash in its key",
			query: `up{l="{{index .Args "my-key"}}"}`,
			vars:  renderTestVars(map[string]string{"my-key": "v"}),
			want:  `up{l="v"}`,
		},
		{
			name:  "zero window unused",
			query: `up`,
			vars:  QueryVars{},
			want:  `up`,
		},

		// Refused values.
		{
			name:   "hostile metric name",
			query:  `{{.Args.metric}}_total`,
			vars:   renderTestVars(map[string]string{"metric": `up or vector(1) or x`}),
			reason: RenderShape,
			msg:    ".Args.metric",
		},
		{
			name:   "metric name with selector",
			query:  `sum({{.Args.metric}})`,
			vars:   renderTestVars(map[string]string{"metric": `up{job="x"}`}),
			reason: RenderShape,
			msg:    ".Args.metric",
		},
		{
			name:  "keyword as metric name",
			query: `sum({{.Args.metric}})`,
			vars:  renderTestVars(map[string]string{"metric": `sum`}),
			want:  `sum(sum)`,
		},
		{
			name:   "keyword that changes the shape",
			query:  `{{.Args.metric}} > 1`,
			vars:   renderTestVars(map[string]string{"metric": `bool`}),
			reason: RenderShape,
			msg:    ".Args.metric",
		},
		{
			name:   "number as metric name",
			query:  `{{.Args.metric}} > 1`,
			vars:   renderTestVars(map[string]string{"metric": `inf`}),
			reason: RenderShape,
			msg:    ".Args.metric",
		},
		{
			name:   "dashed name outside a string",
			query:  `{{.Canary}} > 1`,
			vars:   renderTestVars(nil),
			reason: RenderShape,
			msg:    ".Canary",
		},
		{
			name:   "hostile number",
			query:  `up > {{.Args.threshold}}`,
			vars:   renderTestVars(map[string]string{"threshold": `0.5 or vector(1)`}),
			reason: RenderShape,
			msg:    ".Args.threshold",
		},
		{
			name:   "comment in a number",
			query:  `up > {{.Args.threshold}} and up`,
			vars:   renderTestVars(map[string]string{"threshold": "1 # rest"}),
			reason: RenderShape,
			msg:    ".Args.threshold",
		},
		{
			name:   "hostile duration",
			query:  `rate(up[{{.Args.range}}])`,
			vars:   renderTestVars(map[string]string{"range": `5m]) or vector(1) or rate(up[5m`}),
			reason: RenderShape,
			msg:    ".Args.range",
		},
		{
			name:   "duration expression",
			query:  `rate(up[{{.Args.range}}])`,
			vars:   renderTestVars(map[string]string{"range": `5m*100`}),
			reason: RenderShape,
			msg:    ".Args.range",
		},
		{
			name:   "zero duration",
			query:  `rate(up[{{.Args.range}}])`,
			vars:   renderTestVars(map[string]string{"range": `0s`}),
			reason: RenderShape,
			msg:    ".Args.range",
		},
		{
			name:   "hostile label name",
			query:  `sum by ({{.Args.by}}) (up)`,
			vars:   renderTestVars(map[string]string{"by": "a, b"}),
			reason: RenderShape,
			msg:    ".Args.by",
		},
		{
			name:   "empty label name",
			query:  `sum by ({{.Args.by}}) (up)`,
			vars:   renderTestVars(map[string]string{"by": ""}),
			reason: RenderShape,
			msg:    ".Args.by",
		},
		{
			name:  "empty label value",
			query: `up{l="{{.Args.v}}"}`,
			vars:  renderTestVars(map[string]string{"v": ""}),
			want:  `up{l=""}`,
		},
		{
			name:   "empty threshold",
			query:  `up > {{.Args.v}}`,
			vars:   renderTestVars(map[string]string{"v": ""}),
			reason: RenderShape,
			msg:    ".Args.v",
		},
		{
			name:   "function name from an arg",
			query:  `{{.Args.fn}}(up[5m])`,
			vars:   renderTestVars(map[string]string{"fn": "rate"}),
			reason: RenderShape,
			msg:    ".Args.fn",
		},
		{
			name:   "number where a name is needed",
			query:  `{{.Args.metric}}{job="x"}`,
			vars:   renderTestVars(map[string]string{"metric": "5"}),
			reason: RenderSyntax, // a single token: the template may be the one to blame
			msg:    `parse error: unexpected "{"`,
		},
		{
			name:   "double quote inside single quotes",
			query:  `up{l='{{.Args.v}}'}`,
			vars:   renderTestVars(map[string]string{"v": `a"b`}),
			reason: RenderShape,
			msg:    ".Args.v",
		},
		{
			name:   "invalid regex from a name",
			query:  `up{pod=~"{{.Canary}}-.*"}`,
			vars:   func() QueryVars { v := renderTestVars(nil); v.Canary = "a(b"; return v }(),
			reason: RenderShape,
			msg:    ".Canary",
		},
		{
			name:   "long hostile value is not quoted",
			query:  `{{.Args.metric}}_total`,
			vars:   renderTestVars(map[string]string{"metric": "up or " + strings.Repeat("vector(1) or ", 20) + "up"}),
			reason: RenderShape,
			msg:    ".Args.metric",
		},

		// Template errors.
		{
			name:   "unknown field",
			query:  `up{l="{{.Nope}}"}`,
			vars:   renderTestVars(nil),
			reason: RenderTemplate,
			msg:    "Nope",
		},
		{
			name:   "missing arg",
			query:  `up{l="{{.Args.route}}"}`,
			vars:   renderTestVars(map[string]string{"other": "x"}),
			reason: RenderTemplate,
			msg:    `map has no entry for key "route"`,
		},
		{
			name:   "missing arg without args",
			query:  `up{l="{{.Args.route}}"}`,
			vars:   renderTestVars(nil),
			reason: RenderTemplate,
			msg:    `map has no entry for key "route"`,
		},
		{
			name:   "bad template syntax",
			query:  `up{l="{{"}`,
			vars:   renderTestVars(nil),
			reason: RenderTemplate,
			msg:    "does not parse",
		},
		{
			name:   "zero window used",
			query:  `rate(up[{{.Window}}])`,
			vars:   QueryVars{Interval: time.Minute},
			reason: RenderTemplate,
			msg:    ".Window is 0s",
		},
		{
			name:   "negative interval used",
			query:  `rate(up[{{.Interval}}])`,
			vars:   QueryVars{Window: time.Minute, Interval: -time.Minute},
			reason: RenderTemplate,
			msg:    ".Interval is -1m0s",
		},
		{
			name:   "range",
			query:  `up{ {{range $k, $v := .Args}}{{$k}}="{{$v}}",{{end}} }`,
			vars:   renderTestVars(map[string]string{`a="x"} or vector(1) #`: "v"}),
			reason: RenderTemplate,
			msg:    "query:1:12: range is not allowed",
		},
		{
			name:   "range in a branch",
			query:  `up{{if true}}{{else}}{{with 1}}{{range 1000000000}} + up{{end}}{{end}}{{end}}`,
			vars:   renderTestVars(nil),
			reason: RenderTemplate,
			msg:    "range is not allowed",
		},
		{
			name:   "query too long",
			query:  `up{{with $x := "+ up + up + up + up + up + up + up + up"}}{{$x}}{{$x}}{{$x}}{{$x}}{{end}}` + strings.Repeat(`{{printf "%0300d" 0}}`, 300),
			vars:   renderTestVars(nil),
			reason: RenderTemplate,
			msg:    "longer than",
		},

		// Syntax errors in the template itself.
		{
			name:   "unbalanced parenthesis",
			query:  `sum(rate(http_requests_total{namespace="{{.Namespace}}"}[{{.Window}}])`,
			vars:   renderTestVars(nil),
			reason: RenderSyntax,
			msg:    "parse error: unclosed left parenthesis",
		},
		{
			name:   "unknown function",
			query:  `rat(up[{{.Window}}])`,
			vars:   renderTestVars(nil),
			reason: RenderSyntax,
			msg:    `parse error: unknown function with name "rat"`,
		},
	}

	// Whatever the fmt verb, a value prints escaped.
	for _, q := range []string{`up{l="{{printf "%#v" .Args.v}}"}`, `up{l="{{printf "%x" .Args.v}}"}`, `up{l="{{printf "%d" .Args.v}}"}`, `up{l="{{print .Args.v}}"}`, `up{l={{printf "%q" .Args.v}}}`} {
		tests = append(tests, tc{
			name:  "printf " + q,
			query: q,
			vars:  renderTestVars(map[string]string{"v": `"} or vector(1) #`}),
			check: func(t *testing.T, got string) {
				if m := renderTestMatcher(t, got, "l"); !strings.HasSuffix(m.Value, `"} or vector(1) #`) {
					t.Errorf("matcher value %q", m.Value)
				}
			},
		})
	}

	// Keys of .Args are not escaped; printing .Args or dot whole shows none.
	for _, q := range []string{`up{l="{{.Args}}"}`, `up{l="{{printf "%d" .Args}}"}`, `up{l="{{printf "%#v" .}}"}`, `up{l="{{.}}"}`, `up{l="{{js .Args}}"}`} {
		tests = append(tests, tc{
			name:  "keys not printed " + q,
			query: q,
			vars:  renderTestVars(map[string]string{`k"} or vector(1) #`: "v"}),
			check: func(t *testing.T, got string) {
				if strings.Contains(got, "vector") || strings.Contains(got, "checkout") {
					t.Errorf("rendered %q", got)
				}
			},
		})
	}

	// Hostile values inside a string literal keep their value exactly.
	for _, v := range hostile {
		tests = append(tests, tc{
			name:  "string literal " + v,
			query: `sum(rate(http_requests_total{namespace="{{.Namespace}}",route="{{.Args.v}}"}[{{.Window}}]))`,
			vars:  renderTestVars(map[string]string{"v": v}),
			check: func(t *testing.T, q string) {
				renderTestSameShape(t, q, `sum(rate(http_requests_total{namespace="shop",route="x"}[5m]))`)
				if m := renderTestMatcher(t, q, "route"); m.Value != v {
					t.Errorf("matcher value %q, want %q", m.Value, v)
				}
			},
		})
	}
	// Hostile values used as names, numbers or durations are refused.
	for _, v := range hostile {
		if v == "" || v == "ünïcødé ✓ 日本" {
			continue // parse, or fail, as a name: checked below
		}
		for _, q := range []string{`{{.Args.v}}_total`, `up > {{.Args.v}}`, `rate(up[{{.Args.v}}])`, `sum by ({{.Args.v}}) (up)`} {
			tests = append(tests, tc{
				name:   q + " " + v,
				query:  q,
				vars:   renderTestVars(map[string]string{"v": v}),
				reason: RenderShape,
				msg:    ".Args.v",
			})
		}
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RenderQuery(tt.query, tt.vars)
			if tt.reason != "" {
				var re *RenderError
				if !errors.As(err, &re) {
					t.Fatalf("RenderQuery() = %q, %v; want a *RenderError", got, err)
				}
				if re.Reason != tt.reason || !strings.Contains(re.Message, tt.msg) {
					t.Fatalf("RenderQuery() error %v; want reason %s with %q", re, tt.reason, tt.msg)
				}
				for _, v := range tt.vars.Args {
					if len(v) > 64 && strings.Contains(re.Message, v) {
						t.Errorf("message quotes a value of %d bytes: %s", len(v), re.Message)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("RenderQuery() error %v", err)
			}
			if tt.want != "" && got != tt.want {
				t.Errorf("RenderQuery() =\n%s\nwant\n%s", got, tt.want)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

func TestRenderQueryUnicodeName(t *testing.T) {
	// A non-ASCII value is not a name: as a metric name it is refused, as a
	// string it is kept.
	vars := renderTestVars(map[string]string{"v": "ünïcødé"})
	if _, err := RenderQuery(`{{.Args.v}}_total`, vars); !renderTestIsReason(err, RenderShape) {
		t.Errorf("as a name: %v, want %s", err, RenderShape)
	}
	got, err := RenderQuery(`up{l="{{.Args.v}}"}`, vars)
	if err != nil || got != `up{l="ünïcødé"}` {
		t.Errorf("as a string: %q, %v", got, err)
	}
}

func renderTestIsReason(err error, reason string) bool {
	var re *RenderError
	return errors.As(err, &re) && re.Reason == reason
}

func TestRenderEscapeUnquotes(t *testing.T) {
	// Every byte value and some runes survive escaping in both quote styles.
	var b strings.Builder
	for i := range 256 {
		b.WriteByte(byte(i))
	}
	b.WriteString("\u2028\ufffd\U0001F600\u00a0")
	raw := b.String()
	for _, q := range []string{`"`, `'`} {
		lit := q + renderEscape(raw) + q
		if strings.ContainsRune(raw, '"') && q == `'` {
			// \" is not accepted inside '...'; the shape check refuses it.
			if _, err := parser.NewParser(parser.Options{}).ParseExpr(lit); err == nil {
				t.Errorf(`\" inside '...' parsed`)
			}
			lit = q + strings.ReplaceAll(renderEscape(raw), `\"`, `\x22`) + q
		}
		e, err := parser.NewParser(parser.Options{}).ParseExpr(lit)
		if err != nil {
			t.Fatalf("%s does not parse: %v", lit, err)
		}
		if s := e.(*parser.StringLiteral).Val; s != raw {
			t.Errorf("%s unquotes to %q, want %q", lit, s, raw)
		}
	}
}

func TestRenderPlaceholder(t *testing.T) {
	for v, want := range map[string]string{
		"":                     "x",
		"0.99":                 "1",
		"-1":                   "-1",
		"+.5e-3":               "+1",
		"5m":                   "1m",
		"1h30m":                "1m",
		"0":                    "1",
		"http_requests":        "backstop_placeholder",
		"job:rate5m":           "backstop_placeholder",
		"Inf":                  "backstop_placeholder",
		"a-b":                  "x",
		`x"} or vector(1) #`:   "x",
		"ünïcødé":              "x",
		"5m or vector(1)":      "x",
		"backstop_placeholder": "backstop_placeholder",
	} {
		if got := renderPlaceholder(v); got != want {
			t.Errorf("renderPlaceholder(%q) = %q, want %q", v, got, want)
		}
	}
}

func TestRenderFailTruncates(t *testing.T) {
	long := strings.Repeat(`ab"c`, 40)
	vals := []renderValue{{name: ".Args.v", raw: long}}
	for _, form := range []string{long, renderEscape(long), regexp.QuoteMeta(long)} {
		e := renderFail(RenderSyntax, vals, "parse error near %s", form)
		if strings.Contains(e.Message, long) || strings.Contains(e.Message, form) {
			t.Errorf("message quotes the value: %s", e.Message)
		}
		if !strings.Contains(e.Message, "…") {
			t.Errorf("message not truncated with …: %s", e.Message)
		}
	}
	if got := renderTruncate(strings.Repeat("é", 40)); len(got) > 64+len("…") || !strings.HasSuffix(got, "…") {
		t.Errorf("renderTruncate = %q", got)
	}
}
