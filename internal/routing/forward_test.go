package routing_test

import (
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/routing"
)

func TestForwardConfigErrors(t *testing.T) {
	tests := []struct {
		name, action, want string
	}{
		{"no recipients", "{smarthost: \"mx.test:25\"}", "routes.yaml:6: routes[0].actions[0].forward.to: required: at least one address"},
		{"not an address", "{to: [bob]}", "routes.yaml:6: routes[0].actions[0].forward.to[0]: \"bob\" is not an address"},
		{"empty domain", "{to: [\"bob@\"]}", "forward.to[0]: \"bob@\" is not an address"},
		{"two at signs", "{to: [\"a@b@c.test\"]}", "forward.to[0]: \"a@b@c.test\" is not an address"},
		{"angle brackets", "{to: [\"<bob@b.test>\"]}", "forward.to[0]: \"<bob@b.test>\" is not an address"},
		{"smarthost without port", "{to: [bob@b.test], smarthost: smtp.b.test}", "forward.smarthost: \"smtp.b.test\" must be HOST:PORT"},
		{"smarthost bad port", "{to: [bob@b.test], smarthost: \"smtp.b.test:smtp\"}", "forward.smarthost: \"smtp.b.test:smtp\" must be HOST:PORT"},
		{"smarthost port out of range", "{to: [bob@b.test], smarthost: \"smtp.b.test:70000\"}", "forward.smarthost"},
		{"credentials without smarthost", "{to: [bob@b.test], username: u, password_env: P}", "forward.username: credentials are only sent to a smarthost"},
		{"username without password", "{to: [bob@b.test], smarthost: \"s.test:587\", username: u}", "forward.password_env: required with username"},
		{"password without username", "{to: [bob@b.test], smarthost: \"s.test:587\", password_env: P}", "forward.username: required with password_env"},
		{"credentials in clear", "{to: [bob@b.test], smarthost: \"s.test:587\", starttls: false, username: u, password_env: P}",
			"routes.yaml:6: routes[0].actions[0].forward.starttls: credentials are only sent over TLS"},
		{"negative timeout", "{to: [bob@b.test], timeout: -1s}", "forward.timeout: \"-1s\" is not a duration"},
		{"unknown field", "{to: [bob@b.test], smarthst: \"s.test:25\"}", "routes[0].actions[0].forward.smarthst: unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantConfigError(t, oneAction("forward: "+tt.action), tt.want)
		})
	}
}

func TestForwardConfigValid(t *testing.T) {
	tests := []struct {
		name, action string
		check        func(t *testing.T, f *routing.ForwardAction)
	}{
		{"MX delivery", "{to: [bob@b.test, \"${user}@c.test\"]}", func(t *testing.T, f *routing.ForwardAction) {
			if len(f.To) != 2 || f.Smarthost != "" || f.StartTLS != nil {
				t.Errorf("got %+v", f)
			}
		}},
		{"smarthost with STARTTLS and AUTH", "{to: [bob@b.test], smarthost: \"email-smtp.eu-west-1.amazonaws.com:587\", starttls: true, username: AKIA, password_env: SES_SMTP_PASSWORD}",
			func(t *testing.T, f *routing.ForwardAction) {
				if f.StartTLS == nil || !*f.StartTLS || f.Username != "AKIA" || f.PasswordEnv != "SES_SMTP_PASSWORD" {
					t.Errorf("got %+v", f)
				}
			}},
		{"credentials on implicit TLS", "{to: [bob@b.test], smarthost: \"s.test:465\", starttls: false, username: u, password_env: P}", nil},
		{"credentials with opportunistic default", "{to: [bob@b.test], smarthost: \"[::1]:587\", username: u, password_env: P}", nil},
		{"timeout and private network", "{to: [bob@b.test], smarthost: \"10.0.0.5:25\", timeout: 90s, allow_private_network: true}",
			func(t *testing.T, f *routing.ForwardAction) {
				if time.Duration(f.Timeout) != 90*time.Second || !f.AllowLocal {
					t.Errorf("got %+v", f)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := parseOneAction(t, "forward: "+tt.action).Forward
			if f == nil {
				t.Fatal("no forward action")
			}
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}
