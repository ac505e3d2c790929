package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	backstopv1 "backstop.dev/backstop/api/v1alpha1"
)

// Render is the body a target of type t is posted.
func Render(t backstopv1.NotificationType, n Notification) ([]byte, error) {
	switch t {
	case backstopv1.NotifyWebhook, "":
		return Webhook(n)
	case backstopv1.NotifySlack:
		return Slack(n)
	case backstopv1.NotifyTeams:
		return Teams(n)
	}
	return nil, fmt.Errorf("unknown notification type %q: want Webhook, Slack or Teams", t)
}

// Webhook is the generic webhook body: the Notification as JSON.
func Webhook(n Notification) ([]byte, error) {
	return json.Marshal(n)
}

// fact is one labelled value of a chat message.
type fact struct{ title, value string }

// headline is the first line of a chat message.
func headline(n Notification) string {
	return fmt.Sprintf("Rollout %s/%s: %s", n.Namespace, n.Rollout, n.Phase)
}

// decision is the line that says why the phase changed.
func decision(n Notification) string {
	switch {
	case n.Reason != "" && n.Message != "":
		return n.Reason + ": " + n.Message
	case n.Reason != "":
		return n.Reason
	}
	return n.Message
}

// facts are the details a chat message lists, at most ten (Slack's limit
// of fields in a section).
func facts(n Notification) []fact {
	phase := string(n.Phase)
	if n.PreviousPhase != "" {
		phase += " (was " + string(n.PreviousPhase) + ")"
	}
	fs := []fact{{"Phase", phase}, {"Strategy", n.Strategy}}
	if n.Step != nil {
		fs = append(fs, fact{"Step", fmt.Sprintf("%d of %d", n.Step.Current, n.Step.Total)})
	}
	fs = append(fs, fact{"Canary weight", fmt.Sprintf("%d%%", n.CanaryWeight)})
	if n.StableRevision != "" {
		fs = append(fs, fact{"Stable", revision(n.StableRevision, n.StableSourceRevision)})
	}
	if n.CanaryRevision != "" {
		fs = append(fs, fact{"Canary", revision(n.CanaryRevision, n.CanarySourceRevision)})
	}
	if n.FailedCheck != "" {
		fs = append(fs, fact{"Failed check", n.FailedCheck})
	}
	if n.RevertCommit != "" {
		fs = append(fs, fact{"Revert commit", n.RevertCommit})
	}
	return fs
}

func revision(rev, source string) string {
	if source == "" {
		return rev
	}
	return rev + " (source " + source + ")"
}

// footer is the last, small line of a chat message.
func footer(n Notification) string {
	return "Backstop · " + n.Time.UTC().Format(time.RFC3339)
}

// Slack's limits on text lengths.
const (
	slackHeaderMax  = 150
	slackTextMax    = 3000
	slackFieldMax   = 2000
	slackContextMax = 2000
)

// slackText is a Slack text object.
type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// slackBlock is a Slack layout block: header, section or context.
type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

// slackMessage is an incoming-webhook message: text is the fallback shown
// in notifications and by clients without blocks.
type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

// Slack is a Slack incoming-webhook message: a plain text fallback, and
// blocks with a header, a section with the decision and the facts as
// fields, and a context line with the time.
func Slack(n Notification) ([]byte, error) {
	fallback := headline(n)
	if d := decision(n); d != "" {
		fallback += ". " + d
	}
	section := slackBlock{Type: "section"}
	if d := decision(n); d != "" {
		section.Text = &slackText{Type: "mrkdwn", Text: slackEscape(d, slackTextMax)}
	}
	for _, f := range facts(n) {
		section.Fields = append(section.Fields, slackText{Type: "mrkdwn",
			Text: "*" + f.title + "*\n" + slackEscape(f.value, slackFieldMax-len(f.title)-3)})
	}
	msg := slackMessage{
		Text: slackEscape(fallback, slackTextMax),
		Blocks: []slackBlock{
			{Type: "header", Text: &slackText{Type: "plain_text", Text: truncate(headline(n), slackHeaderMax)}},
			section,
			{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: slackEscape(footer(n), slackContextMax)}}},
		},
	}
	return json.Marshal(msg)
}

// slackEscape escapes the three characters Slack's mrkdwn and text
// fallback give a meaning to, and cuts the result to at most n characters
// without splitting an escape, marking the cut with "…".
func slackEscape(s string, n int) string {
	var b strings.Builder
	count := 0
	for i, r := range s {
		piece := string(r)
		switch r {
		case '&':
			piece = "&amp;"
		case '<':
			piece = "&lt;"
		case '>':
			piece = "&gt;"
		}
		size := utf8.RuneCountInString(piece)
		// Keep room for the mark unless this is the end of s.
		room := n - 1
		if i+utf8.RuneLen(r) == len(s) {
			room = n
		}
		if count+size > room {
			b.WriteString("…")
			return b.String()
		}
		b.WriteString(piece)
		count += size
	}
	return b.String()
}

// teamsMessage is the message Teams workflows and incoming webhooks take:
// one attachment holding an Adaptive Card.
type teamsMessage struct {
	Type        string            `json:"type"`
	Attachments []teamsAttachment `json:"attachments"`
}

type teamsAttachment struct {
	ContentType string    `json:"contentType"`
	ContentURL  *string   `json:"contentUrl"`
	Content     teamsCard `json:"content"`
}

type teamsCard struct {
	Schema  string         `json:"$schema"`
	Type    string         `json:"type"`
	Version string         `json:"version"`
	Body    []teamsElement `json:"body"`
	MSTeams map[string]any `json:"msteams,omitempty"`
}

// teamsElement is a TextBlock or a FactSet.
type teamsElement struct {
	Type     string      `json:"type"`
	Text     string      `json:"text,omitempty"`
	Weight   string      `json:"weight,omitempty"`
	Size     string      `json:"size,omitempty"`
	Color    string      `json:"color,omitempty"`
	IsSubtle bool        `json:"isSubtle,omitempty"`
	Wrap     bool        `json:"wrap,omitempty"`
	Facts    []teamsFact `json:"facts,omitempty"`
}

type teamsFact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

// Teams is a Microsoft Teams message with an Adaptive Card 1.4: the
// headline (in red for a warning, green for a success), the decision, the
// facts as a FactSet and the time.
func Teams(n Notification) ([]byte, error) {
	title := teamsElement{Type: "TextBlock", Text: headline(n), Weight: "Bolder", Size: "Medium", Wrap: true}
	switch {
	case n.Warning:
		title.Color = "Attention"
	case n.Phase == backstopv1.PhaseSucceeded:
		title.Color = "Good"
	}
	body := []teamsElement{title}
	if d := decision(n); d != "" {
		body = append(body, teamsElement{Type: "TextBlock", Text: d, Wrap: true})
	}
	set := teamsElement{Type: "FactSet"}
	for _, f := range facts(n) {
		set.Facts = append(set.Facts, teamsFact{Title: f.title, Value: f.value})
	}
	body = append(body, set, teamsElement{Type: "TextBlock", Text: footer(n), Size: "Small", IsSubtle: true, Wrap: true})
	msg := teamsMessage{
		Type: "message",
		Attachments: []teamsAttachment{{
			ContentType: "application/vnd.microsoft.card.adaptive",
			Content: teamsCard{
				Schema:  "http://adaptivecards.io/schemas/adaptive-card.json",
				Type:    "AdaptiveCard",
				Version: "1.4",
				Body:    body,
				MSTeams: map[string]any{"width": "Full"},
			},
		}},
	}
	return json.Marshal(msg)
}

// truncate cuts s to at most n characters, marking the cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
