package pipeline

import (
	"flag"
	"testing"
)

// TestScannerFlags: --rspamd and --clamd (issue 14's fixed names) come
// from LETTERBOX_RSPAMD and LETTERBOX_CLAMD, and a flag wins.
func TestScannerFlags(t *testing.T) {
	env := map[string]string{"LETTERBOX_RSPAMD": "http://127.0.0.1:11333", "LETTERBOX_CLAMD": "tcp://127.0.0.1:3310"}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	g := RegisterGatewayFlags(fs, func(k string) string { return env[k] })
	if err := fs.Parse([]string{"--clamd", "unix:///run/clamav/clamd.ctl"}); err != nil {
		t.Fatal(err)
	}
	c, err := g.Config()
	if err != nil {
		t.Fatal(err)
	}
	if c.Rspamd != "http://127.0.0.1:11333" || c.Clamd != "unix:///run/clamav/clamd.ctl" {
		t.Errorf("rspamd %q clamd %q", c.Rspamd, c.Clamd)
	}
}
