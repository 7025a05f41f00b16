// Package routereport explains what a routes file does with one message:
// the gateway's RCPT-time decision for each envelope recipient (RFC 5321
// §4.1.1.3) and the routes that match, with what each action would do.
// `letterbox routes test` prints it; the inspector shows it beside a stored
// message.
package routereport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/message"
)

// Report is what a routes file does with a message.
type Report struct {
	MessageID  string         `json:"message_id"`
	Subject    string         `json:"subject"`
	From       string         `json:"from"`
	Recipients []RcptDecision `json:"recipients"`
	Routes     []Route        `json:"routes"`
	Warnings   []string       `json:"warnings,omitempty"`
}

// RcptDecision is the gateway's answer to one RCPT TO.
type RcptDecision struct {
	Address string `json:"address"`
	// Accepted, or the SMTP reply the gateway would give at RCPT time.
	Accepted bool   `json:"accepted"`
	Reply    string `json:"reply,omitempty"`
}

// Route is one matching route.
type Route struct {
	Name       string   `json:"name"`
	Recipients []string `json:"recipients"`
	// Stop: a match ends its recipients' routing (stop: true or a drop action).
	Stop    bool     `json:"stop"`
	Actions []Action `json:"actions"`
}

// Action is one action of a matching route, described for a person.
type Action struct {
	Index int    `json:"index"`
	Kind  string `json:"kind"`
	Does  string `json:"does"`
	Retry string `json:"retry"`
}

// Build evaluates cfg against m. The envelope m carries is used as given;
// when it has no recipients, the To and Cc addresses stand for them, and
// when it has no sender, the From address does. m's envelope is replaced by
// the accepted recipients, as the gateway would have stored it.
func Build(ctx context.Context, cfg *routing.Config, m *message.Message) Report {
	env := m.Envelope
	if env.MailFrom == "" && m.From != nil {
		env.MailFrom = m.From.Address
	}
	if len(env.RcptTo) == 0 {
		for _, a := range append(append([]message.Address{}, m.To...), m.Cc...) {
			env.RcptTo = append(env.RcptTo, a.Address)
		}
	}
	rep := Report{MessageID: m.MessageID, Subject: m.Subject, Warnings: m.Warnings}
	if m.From != nil {
		rep.From = m.From.Address
	}
	var accepted []string
	for _, r := range env.RcptTo {
		d := RcptDecision{Address: r, Accepted: true}
		if err := cfg.CheckRecipient(ctx, env.MailFrom, r); err != nil {
			var rej *routing.Rejection
			if errors.As(err, &rej) {
				d.Accepted, d.Reply = false, rej.Error()
			}
		} else {
			accepted = append(accepted, r)
		}
		rep.Recipients = append(rep.Recipients, d)
	}
	env.RcptTo = accepted
	m.Envelope = env
	var matches []routing.Matched
	if len(accepted) > 0 { // with every recipient refused, the message never arrives
		matches = cfg.Evaluate(ctx, m)
	}
	for _, mt := range matches {
		rr := Route{Name: mt.Route.Name, Recipients: mt.Recipients, Stop: mt.Route.Ends()}
		for i, a := range mt.Route.Actions {
			rr.Actions = append(rr.Actions, Describe(i, a, mt))
		}
		rep.Routes = append(rep.Routes, rr)
	}
	return rep
}

// Names returns the names of the matching routes, in order.
func (r Report) Names() []string {
	var out []string
	for _, rt := range r.Routes {
		out = append(out, rt.Name)
	}
	return out
}

// Describe says what action i of a matched route does.
func Describe(i int, a *routing.Action, mt routing.Matched) Action {
	r := routing.DefaultRetry
	if a.Retry != nil {
		r = *a.Retry
	}
	ar := Action{Index: i, Kind: a.Kind(),
		Retry: fmt.Sprintf("%d attempts, %s doubling to %s", r.Attempts, time.Duration(r.Initial), time.Duration(r.Max))}
	switch a.Kind() {
	case "webhook":
		w := a.Webhook
		n := len(w.Secrets)
		if w.Secret != "" || w.SecretEnv != "" {
			n = 1
		}
		format := w.Format
		if format == "" {
			format = "json"
		}
		ar.Does = fmt.Sprintf("POST %s (%s, signed with %d secret(s))", mt.Expand(w.URL), format, n)
	case "forward":
		var to []string
		for _, t := range a.Forward.To {
			to = append(to, mt.Expand(t))
		}
		via := "MX lookup"
		if a.Forward.Smarthost != "" {
			via = "smart host " + a.Forward.Smarthost
		}
		ar.Does = fmt.Sprintf("forward to %s via %s", strings.Join(to, ", "), via)
	case "lambda":
		ar.Does = fmt.Sprintf("invoke Lambda function %s asynchronously with the webhook v1 event", mt.Expand(a.Lambda.Function))
	case "sqs":
		ar.Does = fmt.Sprintf("send the webhook v1 event to SQS queue %s", mt.Expand(a.SQS.QueueURL))
	case "sns":
		ar.Does = fmt.Sprintf("publish the webhook v1 event to SNS topic %s", mt.Expand(a.SNS.TopicARN))
	case "eventbridge":
		e := a.EventBridge
		bus := mt.Expand(e.Bus)
		if bus == "" {
			bus = "default"
		}
		ar.Does = fmt.Sprintf("put the webhook v1 event on EventBridge bus %s (source %s, detail-type %s)", bus, e.Source, e.DetailType)
	case "store":
		ar.Does = "keep in the store only"
	case "drop":
		ar.Does = "drop (recorded, nothing sent)"
	case "quarantine":
		ar.Does = "copy to quarantine/ in the store; nothing sent"
	}
	return ar
}

// Print writes the report for a terminal.
func Print(w io.Writer, rep Report) {
	id := rep.MessageID
	if id == "" {
		id = "(no Message-ID)"
	}
	fmt.Fprintf(w, "message %s\n  from: %s\n  subject: %s\n", id, rep.From, rep.Subject)
	accepted := 0
	for _, r := range rep.Recipients {
		if r.Accepted {
			accepted++
			fmt.Fprintf(w, "RCPT TO:<%s> → accepted\n", r.Address)
		} else {
			fmt.Fprintf(w, "RCPT TO:<%s> → refused: %s\n", r.Address, r.Reply)
		}
	}
	switch {
	case accepted == 0:
		fmt.Fprintln(w, "every recipient is refused: the message would not be accepted")
	case len(rep.Routes) == 0:
		fmt.Fprintln(w, "no route matches: the message would be stored only")
	}
	for _, r := range rep.Routes {
		stop := ""
		if r.Stop {
			stop = " (stop)"
		}
		fmt.Fprintf(w, "route %s%s, for %s\n", r.Name, stop, strings.Join(r.Recipients, ", "))
		for _, a := range r.Actions {
			fmt.Fprintf(w, "  action %d %s: %s; retry %s\n", a.Index, a.Kind, a.Does, a.Retry)
		}
	}
	for _, wn := range rep.Warnings {
		fmt.Fprintf(w, "warning: %s\n", wn)
	}
}
