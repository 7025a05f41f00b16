package routing_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/routing"
)

// The default schedule fits the delivery queue, with room for the
// longest attempts the deliver function allows.
func TestDefaultRetryFitsTheQueue(t *testing.T) {
	r := routing.DefaultRetry
	if r.Attempts > routing.MaxAttempts {
		t.Fatalf("DefaultRetry has %d attempts, the queue allows %d", r.Attempts, routing.MaxAttempts)
	}
	if w := r.Window(routing.Limits{}.ActionTimeout()); w > routing.MaxRetryWindow {
		t.Fatalf("DefaultRetry may last %s, the queue keeps a job for retries %s", w, routing.MaxRetryWindow)
	}
	if routing.MaxRetryWindow >= routing.QueueRetention {
		t.Fatalf("MaxRetryWindow %s leaves no room in QueueRetention %s", routing.MaxRetryWindow, routing.QueueRetention)
	}
	if routing.MaxReceives <= routing.MaxAttempts {
		t.Fatalf("MaxReceives %d must exceed MaxAttempts %d", routing.MaxReceives, routing.MaxAttempts)
	}
}

// Schedules and timeouts the deployment cannot honour are refused when the
// file loads, naming file, line and field (issue 12 items 1 and 3).
func TestLimitErrors(t *testing.T) {
	head := "domains: [a.test]\nroutes:\n  - name: r\n    catch_all: true\n    actions:\n"
	tests := []struct {
		name string
		lim  routing.Limits
		src  string
		want string
	}{
		{"too many attempts", routing.Limits{}, head + "      - store: true\n        retry: {attempts: 51, initial: 1s, max: 1s}\n",
			"routes.yaml:7: routes[0].actions[0].retry.attempts: 51 is more than the delivery queue allows (at most 50 attempts)"},
		{"window past the queue", routing.Limits{}, head + "      - store: true\n        retry: {attempts: 20, initial: 1h, max: 11h}\n",
			"routes.yaml:7: routes[0].actions[0].retry: the schedule may last 180h35m0s, longer than the delivery queue keeps a job for retries (168h0m0s)"},
		{"webhook timeout past the function", routing.Limits{}, head + "      - webhook: {url: \"https://h.test/\", secret_env: S, timeout: 106s}\n",
			"routes.yaml:6: routes[0].actions[0].webhook.timeout: 1m46s is longer than an attempt may last here (at most 1m45s: the deliver function's timeout, 2m0s, less 15s"},
		{"webhook timeout past a shorter function", routing.Limits{DeliverTimeout: 60 * time.Second}, head + "      - webhook: {url: \"https://h.test/\", secret_env: S, timeout: 60s}\n",
			"routes.yaml:6: routes[0].actions[0].webhook.timeout: 1m0s is longer than an attempt may last here (at most 45s"},
		{"forward timeout past the function", routing.Limits{}, head + "      - forward: {to: [a@b.test], timeout: 5m}\n",
			"routes.yaml:6: routes[0].actions[0].forward.timeout: 5m0s is longer than an attempt may last here"},
		{"forward without forwarding", routing.Limits{NoForward: "forwarding is not configured here"}, head + "      - forward: {to: [a@b.test]}\n",
			"routes.yaml:6: routes[0].actions[0].forward: forwarding is not configured here"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.lim.Parse("routes.yaml", []byte(tt.src))
			var ce routing.ConfigErrors
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse: %v\nwant ConfigErrors containing %q", err, tt.want)
			}
		})
	}
	// At the bounds, accepted.
	for _, src := range []string{
		head + "      - store: true\n        retry: {attempts: 50, initial: 30s, max: 2h}\n",
		head + "      - webhook: {url: \"https://h.test/\", secret_env: S, timeout: 105s}\n",
		head + "      - forward: {to: [a@b.test], timeout: 105s}\n",
	} {
		if _, err := routing.Parse("routes.yaml", []byte(src)); err != nil {
			t.Errorf("Parse(%q): %v", src, err)
		}
	}
	if _, err := (routing.Limits{DeliverTimeout: 300 * time.Second}).Parse("routes.yaml", []byte(head+"      - webhook: {url: \"https://h.test/\", secret_env: S, timeout: 60s}\n")); err != nil {
		t.Errorf("a 60s webhook under a 300s function: %v", err)
	}
}
