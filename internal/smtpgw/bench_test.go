package smtpgw

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/filestore"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

// BenchmarkSMTPSource drives the in-process gateway with Postfix's
// smtp-source (20 sessions, 4 KiB messages), for profiling:
//
//	go test ./smtpgw -run - -bench SMTPSource -benchtime 3000x -cpuprofile cpu.out
//
// "durable" is the file store as it serves mail. "nosync" turns the
// store's syncs off — never a way to run — to show what the gateway costs
// without them. "hook" is durable with a policy hook on loopback that
// accepts (asked at RCPT and at the end of DATA; its CPU counts here too).
// make bench-smtp is the benchmark of record.
func BenchmarkSMTPSource(b *testing.B) {
	source := testenv.Require(b, "smtp-source", "apt-get install postfix")
	for _, mode := range []struct {
		name string
		opts []filestore.Option
		hook bool
	}{{"durable", nil, false}, {"nosync", []filestore.Option{filestore.WithoutSync()}, false}, {"hook", nil, true}} {
		b.Run(mode.name, func(b *testing.B) {
			st, err := filestore.New(filepath.Join(b.TempDir(), "store"), mode.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			cfg, routes := Config{MaxConnectionsPerIP: 1000}, testRoutes
			if mode.hook {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					io.Copy(io.Discard, r.Body)
					io.WriteString(w, `{"action":"accept"}`)
				}))
				defer srv.Close()
				cfg.HookEgress, cfg.PolicyHook, cfg.PolicyHookSecret = egress.Policy{AllowLoopback: true}, srv.URL, hookSecret
			}
			h := startGatewayWith(b, cfg, st, routes)
			n := max(b.N, 20)
			var before syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			b.ResetTimer()
			out, err := exec.Command(source, "-s", "20", "-m", strconv.Itoa(n), "-l", "4096",
				"-f", "bench@remote.test", "-t", "rcpt@example.test", "-M", "client.bench.test", h.addr).CombinedOutput()
			b.StopTimer()
			if err != nil {
				b.Fatalf("smtp-source: %v\n%s", err, out)
			}
			var after syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
			// CPU time of the gateway per message: what the gateway costs,
			// whatever else runs on the machine.
			b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/msg")
		})
	}
}
