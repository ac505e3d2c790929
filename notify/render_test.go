package notify

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// promoted and rolledBack are the two messages the golden files show.
var (
	promoted = Notification{
		Type: EventType, Version: Version, Time: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
		Namespace: "shop", Rollout: "checkout",
		Phase: backstopv1.PhaseSucceeded, PreviousPhase: backstopv1.PhasePromoting,
		Reason: "Promoted", Message: "Revision 7d9f8b6c5 is now stable",
		Strategy: "canary", CanaryWeight: 0,
		StableRevision: "7d9f8b6c5", StableSourceRevision: "main@sha1:2f1e0d9c8b7a",
	}
	rolledBack = Notification{
		Type: EventType, Version: Version, Time: time.Date(2026, 3, 4, 5, 16, 7, 0, time.UTC),
		Namespace: "shop", Rollout: "checkout",
		Phase: backstopv1.PhaseRolledBack, PreviousPhase: backstopv1.PhaseRollingBack,
		Reason: "RolledBack", Message: "Revision 5c4b3a291 was rolled back; reverting it in Git", Warning: true,
		Strategy: "canary", Step: &Step{Current: 2, Total: 4}, CanaryWeight: 0,
		StableRevision: "7d9f8b6c5", CanaryRevision: "5c4b3a291",
		StableSourceRevision: "main@sha1:2f1e0d9c8b7a", CanarySourceRevision: "main@sha1:9a8b7c6d5e4f",
		FailedCheck: "error-rate", RevertCommit: "0f1e2d3c4b5a",
	}
)

// TestRenderGolden: each renderer's body for a promotion and a rollback,
// as the golden files in testdata show it (go test -update rewrites them).
func TestRenderGolden(t *testing.T) {
	for _, typ := range []backstopv1.NotificationType{backstopv1.NotifyWebhook, backstopv1.NotifySlack, backstopv1.NotifyTeams} {
		for name, n := range map[string]Notification{"promoted": promoted, "rolledback": rolledBack} {
			file := filepath.Join("testdata", strings.ToLower(string(typ))+"-"+name+".json")
			t.Run(file, func(t *testing.T) {
				body, err := Render(typ, n)
				if err != nil {
					t.Fatal(err)
				}
				var got bytes.Buffer
				if err := json.Indent(&got, body, "", "  "); err != nil {
					t.Fatalf("the body is not JSON: %v\n%s", err, body)
				}
				got.WriteByte('\n')
				if *update {
					if err := os.WriteFile(file, got.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(file)
				if err != nil {
					t.Fatalf("%v (run go test -update to write it)", err)
				}
				if !bytes.Equal(got.Bytes(), want) {
					t.Errorf("body differs from %s:\n%s", file, got.String())
				}
			})
		}
	}
}

// TestWebhookFieldNames: the generic body names its fields as
// docs/notifications.md documents them, and omits what is not known.
func TestWebhookFieldNames(t *testing.T) {
	body, err := Webhook(rolledBack)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"type": "backstop.dev/phase-change", "version": "v1", "time": "2026-03-04T05:16:07Z",
		"namespace": "shop", "rollout": "checkout", "phase": "RolledBack", "previousPhase": "RollingBack",
		"reason": "RolledBack", "message": "Revision 5c4b3a291 was rolled back; reverting it in Git", "warning": true,
		"strategy": "canary", "step": map[string]any{"current": 2.0, "total": 4.0}, "canaryWeight": 0.0,
		"stableRevision": "7d9f8b6c5", "canaryRevision": "5c4b3a291",
		"stableSourceRevision": "main@sha1:2f1e0d9c8b7a", "canarySourceRevision": "main@sha1:9a8b7c6d5e4f",
		"failedCheck": "error-rate", "revertCommit": "0f1e2d3c4b5a",
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || !jsonEqual(g, v) {
			t.Errorf("field %q = %v; want %v", k, g, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("body has %d fields; want %d: %s", len(got), len(want), body)
	}

	body, err = Webhook(Notification{Type: EventType, Version: Version, Namespace: "shop", Rollout: "checkout", Phase: backstopv1.PhaseInitializing, Strategy: "blueGreen"})
	if err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"previousPhase", "reason", "message", "step", "canaryRevision", "failedCheck", "revertCommit"} {
		if strings.Contains(string(body), `"`+absent+`"`) {
			t.Errorf("a new Rollout's body has %q, which is not known: %s", absent, body)
		}
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// slackPayload is the shape of a Slack incoming-webhook message.
type slackPayload struct {
	Text   string `json:"text"`
	Blocks []struct {
		Type string `json:"type"`
		Text *struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"text"`
		Fields []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"fields"`
		Elements []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"elements"`
	} `json:"blocks"`
}

// TestSlackShape: a header in plain text, a section with the decision and
// at most ten fields, a context line; mrkdwn is escaped and Slack's
// length limits hold.
func TestSlackShape(t *testing.T) {
	n := rolledBack
	n.Rollout = strings.Repeat("r", 200)
	n.Reason, n.Message = "AnalysisFailed", "Check error-rate failed: 0.31 > 0.01 & rising <fast>"
	body, err := Slack(n)
	if err != nil {
		t.Fatal(err)
	}
	var got slackPayload
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if !strings.Contains(got.Text, "RolledBack") || !strings.Contains(got.Text, "0.31 &gt; 0.01 &amp; rising &lt;fast&gt;") {
		t.Errorf("text fallback = %q; want the phase and the escaped decision", got.Text)
	}
	if len(got.Blocks) != 3 {
		t.Fatalf("%d blocks; want header, section, context", len(got.Blocks))
	}
	header, section, context := got.Blocks[0], got.Blocks[1], got.Blocks[2]
	if header.Type != "header" || header.Text == nil || header.Text.Type != "plain_text" {
		t.Errorf("first block = %+v; want a header with plain_text", header)
	} else if n := len([]rune(header.Text.Text)); n > 150 || !strings.HasPrefix(header.Text.Text, "Rollout shop/rrr") {
		t.Errorf("header %q has %d characters; want the Rollout's name within 150", header.Text.Text, n)
	}
	if section.Type != "section" || section.Text == nil || section.Text.Type != "mrkdwn" ||
		section.Text.Text != "AnalysisFailed: Check error-rate failed: 0.31 &gt; 0.01 &amp; rising &lt;fast&gt;" {
		t.Errorf("section = %+v; want the escaped decision in mrkdwn", section)
	}
	if len(section.Fields) == 0 || len(section.Fields) > 10 {
		t.Errorf("section has %d fields; want 1 to 10", len(section.Fields))
	}
	fields := map[string]string{}
	for _, f := range section.Fields {
		title, value, _ := strings.Cut(f.Text, "\n")
		fields[title] = value
		if f.Type != "mrkdwn" {
			t.Errorf("field %q is %s; want mrkdwn", f.Text, f.Type)
		}
	}
	for title, value := range map[string]string{"*Phase*": "RolledBack (was RollingBack)", "*Step*": "2 of 4", "*Failed check*": "error-rate", "*Revert commit*": "0f1e2d3c4b5a"} {
		if fields[title] != value {
			t.Errorf("field %s = %q; want %q", title, fields[title], value)
		}
	}
	if context.Type != "context" || len(context.Elements) != 1 || !strings.Contains(context.Elements[0].Text, "2026-03-04T05:16:07Z") {
		t.Errorf("last block = %+v; want a context with the time", context)
	}
}

// TestSlackEscapeCuts: a long text is cut to the limit without splitting
// an escape.
func TestSlackEscapeCuts(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"a<b", 10, "a&lt;b"},
		{"abcdef", 6, "abcdef"},
		{"abcdefg", 6, "abcde…"},
		{"abc<def", 6, "abc…"},
		{"héllo wörld", 8, "héllo w…"},
	}
	for _, tt := range tests {
		if got := slackEscape(tt.in, tt.n); got != tt.want {
			t.Errorf("slackEscape(%q, %d) = %q; want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

// TestTeamsShape: a message with one Adaptive Card 1.4 attachment, as
// Teams workflows and incoming webhooks take it; the title is red for a
// warning.
func TestTeamsShape(t *testing.T) {
	body, err := Teams(rolledBack)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string  `json:"contentType"`
			ContentURL  *string `json:"contentUrl"`
			Content     struct {
				Schema  string `json:"$schema"`
				Type    string `json:"type"`
				Version string `json:"version"`
				Body    []struct {
					Type  string `json:"type"`
					Text  string `json:"text"`
					Color string `json:"color"`
					Facts []struct {
						Title string `json:"title"`
						Value string `json:"value"`
					} `json:"facts"`
				} `json:"body"`
			} `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if got.Type != "message" || len(got.Attachments) != 1 {
		t.Fatalf("type %q with %d attachments; want a message with one", got.Type, len(got.Attachments))
	}
	a := got.Attachments[0]
	if a.ContentType != "application/vnd.microsoft.card.adaptive" || a.ContentURL != nil {
		t.Errorf("attachment is %s (contentUrl %v); want an adaptive card", a.ContentType, a.ContentURL)
	}
	card := a.Content
	if card.Type != "AdaptiveCard" || card.Version != "1.4" || card.Schema != "http://adaptivecards.io/schemas/adaptive-card.json" {
		t.Errorf("card is %s %s (%s); want AdaptiveCard 1.4", card.Type, card.Version, card.Schema)
	}
	if len(card.Body) < 3 {
		t.Fatalf("card body has %d elements; want a title, the decision and facts", len(card.Body))
	}
	if title := card.Body[0]; title.Type != "TextBlock" || title.Text != "Rollout shop/checkout: RolledBack" || title.Color != "Attention" {
		t.Errorf("title = %+v; want a red TextBlock naming the Rollout and phase", title)
	}
	var facts map[string]string
	for _, e := range card.Body {
		if e.Type == "FactSet" {
			facts = map[string]string{}
			for _, f := range e.Facts {
				facts[f.Title] = f.Value
			}
		}
	}
	if facts["Failed check"] != "error-rate" || facts["Canary"] != "5c4b3a291 (source main@sha1:9a8b7c6d5e4f)" {
		t.Errorf("facts = %v; want the failed check and the canary's revisions", facts)
	}
}

// TestRenderUnknownType: a type the manager cannot post is an error.
func TestRenderUnknownType(t *testing.T) {
	if _, err := Render("Email", promoted); err == nil || !strings.Contains(err.Error(), `"Email"`) {
		t.Errorf("Render(Email) error = %v; want one naming the type", err)
	}
}
