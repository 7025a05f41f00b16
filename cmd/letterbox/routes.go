package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/letterboxmail/letterbox/internal/routing"
)

func init() {
	commands["routes"] = command{summary: "check a routes file (routes check FILE)", run: runRoutes}
}

func runRoutes(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return &exitError{2, errors.New("usage: letterbox routes check FILE")}
	}
	switch args[0] {
	case "check":
		fs := flag.NewFlagSet("routes check", flag.ContinueOnError)
		if err := fs.Parse(args[1:]); err != nil {
			return &exitError{2, err}
		}
		if fs.NArg() != 1 {
			return &exitError{2, errors.New("usage: letterbox routes check FILE")}
		}
		cfg, err := routing.Load(fs.Arg(0))
		if err != nil {
			return &exitError{1, err}
		}
		fmt.Printf("%s: OK: %d domains, %d routes\n", fs.Arg(0), len(cfg.Domains), len(cfg.Routes))
		return nil
	default:
		return &exitError{2, fmt.Errorf("unknown routes subcommand %q (want check)", args[0])}
	}
}
