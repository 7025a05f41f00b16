package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/letterboxmail/letterbox/webhook"
)

// `letterbox dev --policy-hook URL` (secret from
// LETTERBOX_POLICY_HOOK_SECRET) asks the hook at RCPT; the hook on
// loopback is allowed in dev, and the request is signed.
func TestDevPolicyHook(t *testing.T) {
	v, err := webhook.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := v.Verify(r.Header, body); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		io.WriteString(w, `{"action":"reject","code":550,"enhanced_code":"5.7.1","message":"Refused by the dev hook"}`)
	}))
	defer srv.Close()
	dir := t.TempDir()
	routes := writeRoutes(t, dir, "https://h.test")
	for _, viaEnv := range []bool{false, true} {
		smtpAddr, httpAddr := freeAddr(t), freeAddr(t)
		args := []string{"dev", "--store", "file://" + t.TempDir(), "--routes", routes, "--smtp", smtpAddr, "--http", httpAddr, "--no-auth"}
		env := append(os.Environ(), "LETTERBOX_POLICY_HOOK_SECRET="+secret)
		if viaEnv {
			env = append(env, "LETTERBOX_POLICY_HOOK="+srv.URL)
		} else {
			args = append(args, "--policy-hook", srv.URL)
		}
		dev := exec.Command(bin, args...)
		dev.Env = env
		if err := dev.Start(); err != nil {
			t.Fatal(err)
		}
		var c *smtp.Client
		deadline := time.Now().Add(20 * time.Second)
		for c == nil {
			if c, err = smtp.Dial(smtpAddr); err != nil {
				if time.Now().After(deadline) {
					t.Fatalf("letterbox dev never listened: %v", err)
				}
				time.Sleep(50 * time.Millisecond) // polling for the listener
			}
		}
		if err := c.Mail("a@sender.test", nil); err != nil {
			t.Fatal(err)
		}
		err = c.Rcpt("support@example.test", nil)
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 550 || se.Message != "Refused by the dev hook" {
			t.Errorf("env=%v: RCPT = %v", viaEnv, err)
		}
		c.Close()
		dev.Process.Signal(os.Interrupt)
		dev.Wait()
	}
}
