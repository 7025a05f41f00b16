// Command devprof runs the `letterbox dev` pipeline in-process (package
// localserve, wired as cmd/letterbox wires it) with a CPU profile, for
// `go run ./bench/e2e -cpuprofile FILE`. It takes the flags of
// `letterbox dev` it needs, after an optional "dev", plus -cpuprofile; the
// profile is written when it gets SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/letterboxmail/letterbox/internal/localserve"
	"github.com/letterboxmail/letterbox/internal/pipeline"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "dev" {
		args = args[1:]
	}
	fs := flag.NewFlagSet("devprof", flag.ExitOnError)
	cfg := localserve.Config{}
	gw := pipeline.RegisterGatewayFlags(fs, os.Getenv)
	fs.StringVar(gw.Addr(), "smtp", "127.0.0.1:2525", "SMTP listen address")
	fs.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8025", "HTTP address")
	fs.StringVar(&cfg.StoreURL, "store", "file://.letterbox", "store URL")
	fs.StringVar(&cfg.RoutesPath, "routes", "routes.yaml", "routes file")
	fs.StringVar(&cfg.QueueDir, "queue", "", "delivery queue directory")
	fs.BoolVar(&cfg.NoAuth, "no-auth", false, "skip SPF/DKIM/DMARC/ARC checks")
	level := fs.String("log-level", "info", "log level")
	profile := fs.String("cpuprofile", "", "write a CPU profile here")
	fs.Parse(args)
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fatal(err)
	}
	gwCfg, err := gw.Config()
	if err != nil {
		fatal(err)
	}
	cfg.Gateway, cfg.Getenv = gwCfg, os.Getenv
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := localserve.Start(ctx, cfg)
	if err != nil {
		fatal(err)
	}
	// The line faults.Pipeline waits for, as `letterbox dev` prints it.
	fmt.Printf("letterbox dev: SMTP on %s, HTTP on http://%s (devprof, profiling to %s)\n", srv.SMTPAddr(), srv.HTTPAddr(), *profile)
	select {
	case <-ctx.Done():
	case err := <-srv.Err():
		fmt.Fprintln(os.Stderr, "devprof:", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "devprof:", err)
	os.Exit(1)
}
