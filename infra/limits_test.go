package infra

import (
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/infra/cfn"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/smtpgw"
)

// The delivery queue keeps every job for as long as the longest retry
// schedule a routes file may ask for: the queue's maxReceiveCount,
// MessageRetentionPeriod and visibility, and the deliver function's
// timeout, against the bounds the routes loader enforces
// (internal/routing/limits.go) and SQS's 12-hour visibility maximum
// (issue 12 item 1).
func TestDeliveryQueueHonoursTheLongestRetrySchedule(t *testing.T) {
	q := props(t, "DeliveryQueue")
	receives, ok := q.Path("RedrivePolicy", "maxReceiveCount").Int()
	if !ok {
		t.Fatal("DeliveryQueue: RedrivePolicy.maxReceiveCount must be a literal")
	}
	retentionS, ok := intValue(t, q.Get("MessageRetentionPeriod"))
	if !ok {
		t.Fatal("DeliveryQueue: MessageRetentionPeriod must be a literal")
	}
	visS, _ := intValue(t, q.Get("VisibilityTimeout"))
	timeoutS, ok := intValue(t, functionProp(t, "DeliverFunction", "Timeout"))
	if !ok {
		t.Fatal("DeliverFunction: Timeout must be a literal or a parameter with a default")
	}
	retention, vis, timeout := time.Duration(retentionS)*time.Second, time.Duration(visS)*time.Second, time.Duration(timeoutS)*time.Second

	// The deliver function knows the queue's limits: they are the routing
	// package's, which it dead-letters by.
	if receives != routing.MaxReceives {
		t.Errorf("DeliveryQueue maxReceiveCount %d, want routing.MaxReceives (%d)", receives, routing.MaxReceives)
	}
	if retention != routing.QueueRetention {
		t.Errorf("DeliveryQueue MessageRetentionPeriod %s, want routing.QueueRetention (%s)", retention, routing.QueueRetention)
	}
	// Each attempt is one receive: the most attempts a schedule may have
	// end before SQS's own dead-lettering.
	if routing.MaxAttempts >= receives {
		t.Errorf("a schedule may have %d attempts; SQS dead-letters a job after %d receives", routing.MaxAttempts, receives)
	}
	// The default schedule, and the longest one a routes file may ask for
	// with attempts at the function's deadline, end before SQS deletes
	// the job.
	lim := routing.Limits{DeliverTimeout: timeout}
	if w := routing.DefaultRetry.Window(lim.ActionTimeout()); w > routing.MaxRetryWindow {
		t.Errorf("the default schedule may last %s, more than routing.MaxRetryWindow %s", w, routing.MaxRetryWindow)
	}
	if routing.MaxRetryWindow >= retention {
		t.Errorf("a schedule may last %s; DeliveryQueue keeps a job %s", routing.MaxRetryWindow, retention)
	}
	// Every wait is set by ChangeMessageVisibility after an attempt, and
	// SQS refuses more than 12 hours of visibility since the receive.
	for n := 1; n < routing.DefaultRetry.Attempts; n++ {
		if d := routing.DefaultRetry.Delay(n); d+timeout > routing.VisibilityMax {
			t.Fatalf("default schedule: wait %d is %s; with a %s attempt it passes SQS's 12-hour visibility maximum", n, d, timeout)
		}
	}
	if routing.MaxRetryDelay+timeout > routing.VisibilityMax {
		t.Errorf("the longest wait %s after a %s attempt passes SQS's 12-hour visibility maximum", routing.MaxRetryDelay, timeout)
	}
	// A job being attempted does not come back while it runs.
	if vis < timeout {
		t.Errorf("DeliveryQueue VisibilityTimeout %s is shorter than the deliver function's timeout %s", vis, timeout)
	}
}

// Both functions check the routes file's action timeouts against the
// deliver function's timeout, which reaches them as
// LETTERBOX_DELIVER_TIMEOUT; `letterbox dev` and `routes check` use
// routing.DefaultDeliverTimeout (issue 12 item 3).
func TestDeliverTimeoutReachesTheRoutesLoader(t *testing.T) {
	timeoutS, _ := intValue(t, functionProp(t, "DeliverFunction", "Timeout"))
	if time.Duration(timeoutS)*time.Second != routing.DefaultDeliverTimeout {
		t.Errorf("DeliverFunction Timeout %ds, want routing.DefaultDeliverTimeout (%s)", timeoutS, routing.DefaultDeliverTimeout)
	}
	for _, id := range []string{"IngestFunction", "DeliverFunction"} {
		v := functionEnv(t, id)["LETTERBOX_DELIVER_TIMEOUT"]
		if v == nil {
			t.Errorf("%s: no LETTERBOX_DELIVER_TIMEOUT", id)
			continue
		}
		if n, err := strconv.Atoi(v.Str()); err != nil || n != timeoutS {
			t.Errorf("%s: LETTERBOX_DELIVER_TIMEOUT %q, want DeliverFunction's Timeout %d", id, v.Str(), timeoutS)
		}
	}
}

// The ingest function refuses forward actions where the deliver function
// cannot forward: it sees the same LETTERBOX_SRS_DOMAIN (issue 12 item 8).
func TestIngestKnowsWhetherForwardingIsConfigured(t *testing.T) {
	in, out := functionEnv(t, "IngestFunction")["LETTERBOX_SRS_DOMAIN"], functionEnv(t, "DeliverFunction")["LETTERBOX_SRS_DOMAIN"]
	if in == nil || out == nil || !sameNode(in, out) {
		t.Errorf("IngestFunction's LETTERBOX_SRS_DOMAIN must be DeliverFunction's (!If [UseForwarding, !Ref ForwardSrsDomain, !Ref AWS::NoValue])")
	}
}

// The gateway's SPF and DNS-blocklist policies are stack parameters whose
// allowed values are the ones the gateway accepts (issue 12 item 9).
func TestGatewayPolicyParameters(t *testing.T) {
	tp := template(t)
	spf := tp.Parameters.Get("GatewaySpf")
	if spf == nil || !slices.Equal(spf.Get("AllowedValues").Strings(), []string{smtpgw.SPFOff, smtpgw.SPFTag, smtpgw.SPFReject}) || spf.Get("Default").Str() != smtpgw.SPFOff {
		t.Errorf("GatewaySpf must allow exactly %s, %s and %s (smtpgw's --spf), default %s", smtpgw.SPFOff, smtpgw.SPFTag, smtpgw.SPFReject, smtpgw.SPFOff)
	}
	dnsbl := tp.Parameters.Get("GatewayDnsbl")
	if dnsbl == nil || dnsbl.Get("Default") == nil || dnsbl.Get("Default").Str() != "" {
		t.Fatal(`GatewayDnsbl must exist with Default "" (no blocklist unless asked for)`)
	}
	re, err := regexp.Compile(dnsbl.Get("AllowedPattern").Str())
	if err != nil {
		t.Fatalf("GatewayDnsbl AllowedPattern: %v", err)
	}
	for v, ok := range map[string]bool{"": true, "zen.spamhaus.org": true, "zen.spamhaus.org,bl.example.test": true,
		"zen.spamhaus.org, bl.example": false, "a/b": false, "x@y": false, "zen.spamhaus.org,": false} {
		if re.MatchString(v) != ok {
			t.Errorf("GatewayDnsbl AllowedPattern on %q: %v, want %v", v, !ok, ok)
		}
	}
	var env map[string]*cfn.Node
	if cs := props(t, "GatewayTaskDefinition").Get("ContainerDefinitions").Items; len(cs) > 0 {
		env = map[string]*cfn.Node{}
		for _, e := range cs[0].Get("Environment").Items {
			env[e.Get("Name").Str()] = e.Get("Value")
		}
	}
	if refTarget(env["LETTERBOX_SPF"]) != "GatewaySpf" || refTarget(env["LETTERBOX_DNSBL"]) != "GatewayDnsbl" {
		t.Error("the gateway's LETTERBOX_SPF and LETTERBOX_DNSBL must !Ref GatewaySpf and GatewayDnsbl")
	}
	groups := tp.Root.Path("Metadata", "AWS::CloudFormation::Interface", "ParameterGroups")
	listed := 0
	for _, g := range groups.Items {
		for _, p := range g.Get("Parameters").Strings() {
			if p == "GatewaySpf" || p == "GatewayDnsbl" {
				listed++
			}
		}
	}
	if listed != 2 {
		t.Error("GatewaySpf and GatewayDnsbl must be in a parameter group")
	}
}
