package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/internal/parser"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/message"
)

func init() {
	commands["routes"] = command{summary: "check a routes file, or test it on a message (routes check|test)", run: runRoutes}
}

const routesUsage = `usage:
  letterbox routes check FILE
  letterbox routes test FILE MESSAGE.eml [--rcpt ADDR]... [--mail-from ADDR] [--expect ROUTE,...] [--json]`

func runRoutes(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return &exitError{2, errors.New(routesUsage)}
	}
	switch args[0] {
	case "check":
		return routesCheck(args[1:])
	case "test":
		return routesTest(ctx, args[1:], os.Stdout)
	default:
		return &exitError{2, fmt.Errorf("unknown routes subcommand %q\n%s", args[0], routesUsage)}
	}
}

func routesCheck(args []string) error {
	fs := flag.NewFlagSet("routes check", flag.ContinueOnError)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return &exitError{2, err}
	}
	if len(pos) != 1 {
		return &exitError{2, errors.New(routesUsage)}
	}
	cfg, err := routing.Load(pos[0])
	if err != nil {
		return &exitError{1, err}
	}
	fmt.Printf("%s: OK: %d domains, %d routes%s\n", pos[0], len(cfg.Domains), len(cfg.Routes), policySummary(cfg.Policy))
	return nil
}

// policySummary names the parts of the policy: key that are set.
func policySummary(p *routing.Policy) string {
	if p == nil {
		return ""
	}
	var parts []string
	for _, f := range []struct {
		name string
		set  bool
	}{{"spam", p.Spam != nil}, {"virus", p.Virus != nil}, {"scanners", p.Scanners != nil}, {"clients", p.Clients != nil}, {"hook", p.Hook != nil}} {
		if f.set {
			parts = append(parts, f.name)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; policy: " + strings.Join(parts, ", ")
}

// testReport is what `routes test` found, also printed with --json.
type testReport struct {
	MessageID  string         `json:"message_id"`
	Subject    string         `json:"subject"`
	From       string         `json:"from"`
	Recipients []rcptDecision `json:"recipients"`
	Routes     []routeReport  `json:"routes"`
	Warnings   []string       `json:"warnings,omitempty"`
}

type rcptDecision struct {
	Address string `json:"address"`
	// Accepted, or the SMTP reply the gateway would give at RCPT time.
	Accepted bool   `json:"accepted"`
	Reply    string `json:"reply,omitempty"`
}

type routeReport struct {
	Name       string   `json:"name"`
	Recipients []string `json:"recipients"`
	// Stop: a match ends its recipients' routing (stop: true or a drop action).
	Stop    bool           `json:"stop"`
	Actions []actionReport `json:"actions"`
}

type actionReport struct {
	Index int    `json:"index"`
	Kind  string `json:"kind"`
	Does  string `json:"does"`
	Retry string `json:"retry"`
}

func routesTest(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("routes test", flag.ContinueOnError)
	var rcpts listFlag
	fs.Var(&rcpts, "rcpt", "envelope recipient `address` (repeatable; default: the To and Cc addresses)")
	mailFrom := fs.String("mail-from", "", "envelope sender `address` (default: the From address)")
	expect := fs.String("expect", "", "comma-separated `routes` that must match, in order; exit 1 otherwise (use \"\" with -expect-none)")
	expectNone := fs.Bool("expect-none", false, "no route may match")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return &exitError{2, err}
	}
	if len(pos) != 2 {
		return &exitError{2, errors.New(routesUsage)}
	}
	cfg, err := routing.Load(pos[0])
	if err != nil {
		return &exitError{1, err}
	}
	f, err := os.Open(pos[1])
	if err != nil {
		return &exitError{1, err}
	}
	defer f.Close()
	m, err := parser.Parse(ctx, f, parser.Options{ID: "routes-test", RawKey: pos[1]})
	if err != nil {
		return &exitError{1, err}
	}
	env := message.Envelope{MailFrom: *mailFrom, RcptTo: rcpts, ReceivedAt: time.Now().UTC()}
	if env.MailFrom == "" && m.From != nil {
		env.MailFrom = m.From.Address
	}
	if len(env.RcptTo) == 0 {
		for _, a := range append(append([]message.Address{}, m.To...), m.Cc...) {
			env.RcptTo = append(env.RcptTo, a.Address)
		}
	}
	rep := testReport{MessageID: m.MessageID, Subject: m.Subject, Warnings: m.Warnings}
	if m.From != nil {
		rep.From = m.From.Address
	}
	// The gateway's RCPT-time decision for each recipient.
	var accepted []string
	for _, r := range env.RcptTo {
		d := rcptDecision{Address: r, Accepted: true}
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
		rr := routeReport{Name: mt.Route.Name, Recipients: mt.Recipients, Stop: mt.Route.Ends()}
		for i, a := range mt.Route.Actions {
			rr.Actions = append(rr.Actions, describeAction(i, a, mt))
		}
		rep.Routes = append(rep.Routes, rr)
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		printReport(out, rep)
	}
	var got []string
	for _, r := range rep.Routes {
		got = append(got, r.Name)
	}
	switch {
	case *expectNone && len(got) > 0:
		return &exitError{1, fmt.Errorf("expected no route to match, got %s", strings.Join(got, ","))}
	case *expect != "" && !slices.Equal(got, splitList(*expect)):
		return &exitError{1, fmt.Errorf("expected routes %s, got %s", *expect, strings.Join(got, ","))}
	}
	return nil
}

func describeAction(i int, a *routing.Action, mt routing.Matched) actionReport {
	r := routing.DefaultRetry
	if a.Retry != nil {
		r = *a.Retry
	}
	ar := actionReport{Index: i, Kind: a.Kind(),
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

func printReport(w io.Writer, rep testReport) {
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
