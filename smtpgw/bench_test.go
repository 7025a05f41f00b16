package smtpgw

import (
	"os/exec"
	"strconv"
	"testing"

	"github.com/letterboxmail/letterbox/internal/testenv"
)

// BenchmarkSMTPSource drives the in-process gateway over the file store
// with Postfix's smtp-source (20 sessions, 4 KiB), for profiling:
//
//	go test ./smtpgw -run - -bench SMTPSource -cpuprofile cpu.out
//
// make bench-smtp is the benchmark of record.
func BenchmarkSMTPSource(b *testing.B) {
	source := testenv.Require(b, "smtp-source", "apt-get install postfix")
	h := startGateway(b, Config{MaxConnectionsPerIP: 1000})
	b.ResetTimer()
	out, err := exec.Command(source, "-s", "20", "-m", strconv.Itoa(max(b.N, 20)), "-l", "4096",
		"-f", "bench@remote.test", "-t", "rcpt@example.test", "-M", "client.bench.test", h.addr).CombinedOutput()
	b.StopTimer()
	if err != nil {
		b.Fatalf("smtp-source: %v\n%s", err, out)
	}
	b.ReportMetric(float64(max(b.N, 20))/b.Elapsed().Seconds(), "msgs/s")
}
