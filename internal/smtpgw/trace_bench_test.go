package smtpgw

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/telemetry"
)

// BenchmarkTransactionTracing measures one SMTP transaction (MAIL, RCPT,
// DATA of 4 KiB, the store write) on one connection, with tracing off
// (OpenTelemetry's global no-op tracer, what runs when no OTEL_* variable
// is set) and on (the SDK, every span sampled and exported in batches to
// an in-memory exporter), to report tracing's overhead as a ratio
// (docs/benchmarks.md, "Tracing"):
//
//	go test ./internal/smtpgw -run - -bench TransactionTracing -count 1 -benchtime 3000x
//
// The store does not sync (filestore.WithoutSync), so that the gateway's
// own CPU, not the disk, is what is compared. "off" must run before "on":
// the global tracer provider cannot be unset, hence -count 1.
func BenchmarkTransactionTracing(b *testing.B) {
	msg := []byte("From: a@remote.test\r\nTo: rcpt@example.test\r\nSubject: bench\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 64))
	traced := false
	run := func(b *testing.B) {
		st, err := filestore.New(filepath.Join(b.TempDir(), "store"), filestore.WithoutSync())
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		h := startGatewayWith(b, Config{MaxConnectionsPerIP: 10}, st, testRoutes)
		c, err := smtp.Dial(h.addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.bench.test"); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(msg)))
		var before syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
		b.ResetTimer()
		for range b.N {
			if err := c.Mail("bench@remote.test", nil); err != nil {
				b.Fatal(err)
			}
			if err := c.Rcpt("rcpt@example.test", nil); err != nil {
				b.Fatal(err)
			}
			w, err := c.Data()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := w.Write(msg); err != nil {
				b.Fatal(err)
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		var after syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
		// CPU time of client and gateway per transaction: steadier than
		// wall time on a shared machine.
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
	}
	b.Run("off", func(b *testing.B) {
		if traced || telemetry.On() {
			b.Skip("the global tracer provider is set (by a test or an earlier round): run with -run - -count 1")
		}
		run(b)
	})
	// One provider for every run of "on": tracers already handed out keep
	// delegating to the first provider set.
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer tp.Shutdown(context.Background())
	b.Run("on", func(b *testing.B) {
		otel.SetTracerProvider(tp)
		traced = true
		exp.Reset()
		run(b)
		tp.ForceFlush(context.Background())
		if n := len(exp.GetSpans()); n < b.N*4 {
			var names bytes.Buffer
			for _, s := range exp.GetSpans() {
				names.WriteString(s.Name + " ")
			}
			b.Fatalf("%d spans for %d transactions: %s", n, b.N, names.String())
		}
		exp.Reset()
	})
}
