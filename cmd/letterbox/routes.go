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
	"github.com/letterboxmail/letterbox/internal/routereport"
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
type testReport = routereport.Report

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
	m.Envelope = message.Envelope{MailFrom: *mailFrom, RcptTo: rcpts, ReceivedAt: time.Now().UTC()}
	rep := routereport.Build(ctx, cfg, m)
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		routereport.Print(out, rep)
	}
	got := rep.Names()
	switch {
	case *expectNone && len(got) > 0:
		return &exitError{1, fmt.Errorf("expected no route to match, got %s", strings.Join(got, ","))}
	case *expect != "" && !slices.Equal(got, splitList(*expect)):
		return &exitError{1, fmt.Errorf("expected routes %s, got %s", *expect, strings.Join(got, ","))}
	}
	return nil
}
