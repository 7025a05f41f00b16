package infra

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/infra/cfn"
	"github.com/letterboxmail/letterbox/internal/links"
)

// Store layout prefixes (internal/store) that the template scopes
// permissions and lifecycle rules to.
var storePrefixes = []string{"raw/", "envelopes/", "parsed/", "attachments/", "deliveries/"}

func TestTemplateParses(t *testing.T) {
	tp := template(t)
	if got := tp.Root.Get("Transform").Str(); got != "AWS::Serverless-2016-10-31" {
		t.Errorf("Transform = %q, want the SAM transform", got)
	}
	if len(tp.Resources.Keys) < 20 {
		t.Errorf("only %d resources; did the template lose a section?", len(tp.Resources.Keys))
	}
}

// Every parameter is used. cfn-lint checks references, conditions and
// mappings (make lint-template), but not unused parameters in a SAM
// template (W2001 is off where the transform may consume them).
func TestEveryParameterIsUsed(t *testing.T) {
	tp := template(t)
	used := map[string]bool{}
	for _, sec := range []*cfn.Node{tp.Root.Get("Rules"), tp.Conditions, tp.Globals, tp.Resources, tp.Outputs} {
		walk(sec, func(n *cfn.Node) {
			name, arg, ok := n.Intrinsic()
			switch {
			case ok && name == "Ref":
				used[arg.Str()] = true
			case ok && name == "Fn::Sub":
				var local *cfn.Node // the variables a !Sub [text, {…}] defines
				if arg.Kind == cfn.Seq && len(arg.Items) == 2 {
					local = arg.Items[1]
				}
				for _, v := range cfn.SubVariables(subText(n)) {
					if local.Get(v) == nil {
						used[v] = true
					}
				}
			}
		})
	}
	for i, name := range tp.Parameters.Keys {
		if !used[name] {
			t.Errorf("line %d: parameter %s is never used", tp.Parameters.Vals[i].Line, name)
		}
	}
}

// The functions' contract with the code and the build.
func TestFunctionsFollowTheContract(t *testing.T) {
	fns := functions(t)
	for _, want := range []string{"IngestFunction", "DeliverFunction"} {
		if !slices.Contains(fns, want) {
			t.Errorf("no function %s (logical ids are part of the build contract)", want)
		}
	}
	for _, id := range fns {
		if got := functionProp(t, id, "Runtime").Str(); got != "provided.al2023" {
			t.Errorf("%s: Runtime %q, want provided.al2023", id, got)
		}
		if got := functionProp(t, id, "Architectures").Strings(); !slices.Equal(got, []string{"arm64"}) {
			t.Errorf("%s: Architectures %v, want [arm64]", id, got)
		}
		if got := functionProp(t, id, "Handler").Str(); got != "bootstrap" {
			t.Errorf("%s: Handler %q, want bootstrap", id, got)
		}
		if got := functionProp(t, id, "CodeUri").Str(); got != "." {
			t.Errorf("%s: CodeUri %q, want . (the module root, where the Makefile is)", id, got)
		}
		if got := template(t).Resource(id).Path("Metadata", "BuildMethod").Str(); got != "makefile" {
			t.Errorf("%s: Metadata.BuildMethod %q, want makefile", id, got)
		}
		if functionProp(t, id, "Role") == nil {
			t.Errorf("%s: no explicit Role; SAM's default role attaches a managed policy with Resource \"*\"", id)
		}
		env := functionEnv(t, id)
		for _, name := range []string{"LETTERBOX_STORE", "LETTERBOX_ROUTES", "LETTERBOX_DELIVERY_QUEUE_URL", "LETTERBOX_RESOLVER", "LETTERBOX_LOG_LEVEL"} {
			if env[name] == nil && (id != "LinkFunction" || name == "LETTERBOX_STORE") {
				t.Errorf("%s: environment lacks %s", id, name)
			}
		}
		if got := subText(env["LETTERBOX_STORE"]); got != "s3://${MailBucket}" {
			t.Errorf("%s: LETTERBOX_STORE = %q, want s3://${MailBucket}", id, got)
		}
		if id == "LinkFunction" {
			continue // reads the store and the link key only (TestLinkFunction)
		}
		if id == "DeliverFunction" && refTarget(env["LETTERBOX_DEAD_LETTER_QUEUE_URL"]) != "DeliveryDeadLetterQueue" {
			t.Errorf("%s: LETTERBOX_DEAD_LETTER_QUEUE_URL must !Ref DeliveryDeadLetterQueue", id)
		}
		if id == "IngestFunction" && refTarget(env["LETTERBOX_RAW_DEAD_LETTER_QUEUE_URL"]) != "RawDeadLetterQueue" {
			t.Errorf("%s: LETTERBOX_RAW_DEAD_LETTER_QUEUE_URL must !Ref RawDeadLetterQueue", id)
		}
		if got := refTarget(env["LETTERBOX_DELIVERY_QUEUE_URL"]); got != "DeliveryQueue" {
			t.Errorf("%s: LETTERBOX_DELIVERY_QUEUE_URL refers to %q, want DeliveryQueue", id, got)
		}
		for _, r := range branches(env["LETTERBOX_ROUTES"]) {
			if s := subText(r); !hasPrefixAny(s, "s3://${MailBucket}/", "ssm://") {
				t.Errorf("%s: LETTERBOX_ROUTES branch %q is neither s3://BUCKET/KEY nor ssm:///name", id, s)
			}
		}
	}
}

// Every SQS event source reports partial batch failures, its queue sends
// poison messages to a dead-letter queue, and its visibility timeout is at
// least six times the function's timeout plus the batching window.
func TestSQSEventSources(t *testing.T) {
	tp := template(t)
	seen := 0
	for _, id := range functions(t) {
		timeout, ok := intValue(t, functionProp(t, id, "Timeout"))
		if !ok {
			t.Errorf("%s: Timeout must be a literal or a parameter with a default", id)
			continue
		}
		events := props(t, id).Get("Events")
		if events == nil {
			continue
		}
		for i, name := range events.Keys {
			ev := events.Vals[i]
			if ev.Get("Type").Str() != "SQS" {
				continue
			}
			seen++
			where := id + "/Events/" + name
			p := ev.Get("Properties")
			if !slices.Contains(p.Get("FunctionResponseTypes").Strings(), "ReportBatchItemFailures") {
				t.Errorf("%s: FunctionResponseTypes lacks ReportBatchItemFailures", where)
			}
			q, attr := getAtt(p.Get("Queue"))
			if attr != "Arn" || tp.ResourceType(q) != "AWS::SQS::Queue" {
				t.Errorf("%s: Queue must be !GetAtt <queue in this template>.Arn", where)
				continue
			}
			qp := props(t, q)
			window, _ := intValue(t, p.Get("MaximumBatchingWindowInSeconds"))
			vis, ok := intValue(t, qp.Get("VisibilityTimeout"))
			if !ok {
				vis = 30 // SQS default
			}
			if want := 6*timeout + window; vis < want {
				t.Errorf("%s: %s VisibilityTimeout %d < 6 x Timeout %d + window %d = %d", where, q, vis, timeout, window, want)
			}
			rp := qp.Get("RedrivePolicy")
			dlq, _ := getAtt(rp.Get("deadLetterTargetArn"))
			if tp.ResourceType(dlq) != "AWS::SQS::Queue" {
				t.Errorf("%s: %s has no RedrivePolicy.deadLetterTargetArn pointing at a queue", where, q)
				continue
			}
			if n, ok := rp.Get("maxReceiveCount").Int(); !ok || n < 2 {
				t.Errorf("%s: %s maxReceiveCount must be at least 2 (got %v)", where, q, rp.Get("maxReceiveCount").Str())
			}
			retention := func(id string) int {
				if v, ok := intValue(t, props(t, id).Get("MessageRetentionPeriod")); ok {
					return v
				}
				return 345600 // SQS default, 4 days
			}
			if retention(dlq) <= retention(q) {
				t.Errorf("%s: %s keeps messages %ds, not longer than its source %s (%ds); moved messages keep their enqueue time", where, dlq, retention(dlq), q, retention(q))
			}
		}
	}
	if seen < 2 {
		t.Errorf("found %d SQS event sources, want one per function", seen)
	}
}

// Every function and the gateway log to a log group of this stack with a
// retention period.
func TestLogGroupsHaveRetention(t *testing.T) {
	tp := template(t)
	for _, id := range tp.ResourcesOfType("AWS::Logs::LogGroup") {
		if props(t, id).Get("RetentionInDays") == nil {
			t.Errorf("%s: no RetentionInDays", id)
		}
	}
	for _, id := range functions(t) {
		lg := refTarget(functionProp(t, id, "LoggingConfig").Get("LogGroup"))
		if tp.ResourceType(lg) != "AWS::Logs::LogGroup" {
			t.Errorf("%s: LoggingConfig.LogGroup must !Ref a log group of this template, got %q", id, lg)
		}
		if got := functionProp(t, id, "LoggingConfig").Get("LogFormat").Str(); got != "JSON" {
			t.Errorf("%s: LogFormat %q; JSON lets aws-lambda-go's slog handler and level filtering work", id, got)
		}
	}
	for _, id := range tp.ResourcesOfType("AWS::ECS::TaskDefinition") {
		for _, c := range items(props(t, id).Get("ContainerDefinitions")) {
			lg := refTarget(c.Path("LogConfiguration", "Options", "awslogs-group"))
			if tp.ResourceType(lg) != "AWS::Logs::LogGroup" {
				t.Errorf("%s/%s: awslogs-group must !Ref a log group of this template, got %q", id, c.Get("Name").Str(), lg)
			}
		}
	}
}

type statement struct {
	where    string
	resource bool // a resource policy (bucket, queue, topic), not an identity policy
	node     *cfn.Node
}

// statements returns every policy statement in the template, with Fn::If
// expanded to both branches.
func statements(t *testing.T) []statement {
	tp := template(t)
	var out []statement
	add := func(where string, doc *cfn.Node, resource bool) {
		for _, s := range items(doc.Get("Statement")) {
			out = append(out, statement{where, resource, s})
		}
	}
	for i, id := range tp.Resources.Keys {
		r := tp.Resources.Vals[i]
		p := r.Get("Properties")
		switch r.Get("Type").Str() {
		case "AWS::IAM::Role":
			for _, pol := range items(p.Get("Policies")) {
				add(id+"/"+pol.Get("PolicyName").Str(), pol.Get("PolicyDocument"), false)
			}
			if p.Get("ManagedPolicyArns") != nil {
				t.Errorf("%s: ManagedPolicyArns hide permissions from review; write the statements out", id)
			}
		case "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy":
			add(id, p.Get("PolicyDocument"), false)
		case "AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy":
			add(id, p.Get("PolicyDocument"), true)
		case "AWS::Serverless::Function":
			for _, pol := range items(p.Get("Policies")) {
				if pol.Kind != cfn.Map || pol.Get("Statement") == nil {
					t.Errorf("%s: Policies entry at line %d is a managed policy or policy template; write statements out", id, pol.Line)
					continue
				}
				add(id, pol, false)
			}
		}
	}
	return out
}

// readVerbs start the names of actions that only read.
var readVerbs = []string{"Get", "List", "Describe", "BatchGet", "BatchCheck", "Head", "Query", "Scan", "Lookup", "Search", "Select", "View"}

func isWrite(action string) bool {
	_, verb, ok := strings.Cut(action, ":")
	if !ok || strings.Contains(verb, "*") {
		return true // a wildcard may include writes
	}
	return !hasPrefixAny(verb, readVerbs...)
}

// No Allow grants a write action on Resource "*"; no Allow uses NotAction or
// NotResource; resource policies allow no anonymous principal.
func TestIAMNoWildcardWrites(t *testing.T) {
	sts := statements(t)
	if len(sts) < 10 {
		t.Fatalf("found only %d policy statements", len(sts))
	}
	for _, s := range sts {
		where := fmt.Sprintf("line %d: %s", s.node.Line, s.where)
		if s.node.Get("Effect").Str() != "Allow" {
			continue
		}
		if s.node.Get("NotAction") != nil || s.node.Get("NotResource") != nil {
			t.Errorf("%s: Allow with NotAction/NotResource", where)
		}
		var writes []string
		for _, a := range items(s.node.Get("Action")) {
			if isWrite(a.Str()) {
				writes = append(writes, a.Str())
			}
		}
		for _, r := range items(s.node.Get("Resource")) {
			if r.Str() == "*" && len(writes) > 0 {
				t.Errorf("%s: Resource \"*\" with write actions %v", where, writes)
			}
		}
		if s.resource {
			for _, p := range items(s.node.Get("Principal")) {
				if p.Str() == "*" || p.Get("AWS").Str() == "*" {
					t.Errorf("%s: resource policy allows any principal", where)
				}
			}
		}
	}
}

// Each stage writes only the store prefixes it owns, and nobody deletes:
// expiry is the lifecycle rules' job.
func TestIAMLeastPrivilege(t *testing.T) {
	cases := []struct {
		role      string
		s3Writes  []string
		sqsSendTo []string
	}{
		{"IngestRole", []string{"parsed/*", "attachments/*", "deliveries/*"}, []string{"DeliveryQueue", "RawDeadLetterQueue"}},
		// PublishTargetArns: the queues (and functions, topics, buses) the
		// operator lists for the sqs/lambda/sns/eventbridge route actions.
		{"DeliverRole", []string{"deliveries/*", "forward/*", "quarantine/*"}, []string{"DeliveryDeadLetterQueue", "PublishTargetArns"}},
		{"GatewayTaskRole", []string{"raw/*", "envelopes/*", "verdicts/*", "quarantine/*"}, nil},
		{"LinkRole", nil, nil},
	}
	byRole := map[string][]statement{}
	for _, s := range statements(t) {
		role, _, _ := strings.Cut(s.where, "/")
		byRole[role] = append(byRole[role], s)
	}
	for _, c := range cases {
		if len(byRole[c.role]) == 0 {
			t.Errorf("%s: no statements", c.role)
			continue
		}
		var gotWrites, gotSend []string
		for _, s := range byRole[c.role] {
			if s.node.Get("Effect").Str() != "Allow" {
				continue
			}
			for _, a := range items(s.node.Get("Action")) {
				act := a.Str()
				if strings.HasPrefix(act, "s3:Delete") {
					t.Errorf("%s: %s; expiry belongs to lifecycle rules", c.role, act)
				}
				for _, r := range items(s.node.Get("Resource")) {
					switch {
					case strings.HasPrefix(act, "s3:") && isWrite(act):
						key, ok := strings.CutPrefix(subText(r), "${MailBucket.Arn}/")
						if !ok {
							t.Errorf("%s: %s on a resource outside the mail bucket's objects (line %d)", c.role, act, r.Line)
						}
						gotWrites = append(gotWrites, key)
					case act == "sqs:SendMessage":
						q, _ := getAtt(r)
						if p := refTarget(r); p != "" {
							q = p
						}
						gotSend = append(gotSend, q)
					}
				}
			}
		}
		for _, w := range gotWrites {
			if !slices.Contains(c.s3Writes, w) {
				t.Errorf("%s: may write %q; it owns only %v", c.role, w, c.s3Writes)
			}
		}
		for _, q := range gotSend {
			if !slices.Contains(c.sqsSendTo, q) {
				t.Errorf("%s: may send to %q; allowed: %v", c.role, q, c.sqsSendTo)
			}
		}
		slices.Sort(gotSend)
		if want := slices.Sorted(slices.Values(c.sqsSendTo)); !slices.Equal(slices.Compact(gotSend), want) {
			t.Errorf("%s: sends to %v, want %v", c.role, gotSend, want)
		}
	}
}

func TestBucketIsPrivateEncryptedAndTLSOnly(t *testing.T) {
	tp := template(t)
	buckets := tp.ResourcesOfType("AWS::S3::Bucket")
	if len(buckets) != 1 || buckets[0] != "MailBucket" {
		t.Fatalf("buckets %v, want [MailBucket]", buckets)
	}
	b := props(t, "MailBucket")
	pab := b.Get("PublicAccessBlockConfiguration")
	for _, k := range []string{"BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"} {
		if pab.Get(k).Str() != "true" {
			t.Errorf("PublicAccessBlockConfiguration.%s is not true", k)
		}
	}
	enc := b.Path("BucketEncryption", "ServerSideEncryptionConfiguration")
	if enc == nil || len(enc.Items) == 0 {
		t.Error("no default encryption")
	} else {
		for _, d := range branches(enc.Items[0].Get("ServerSideEncryptionByDefault")) {
			if a := d.Get("SSEAlgorithm").Str(); a != "AES256" && a != "aws:kms" {
				t.Errorf("SSEAlgorithm %q", a)
			}
		}
	}
	if got := b.Path("OwnershipControls").Get("Rules").Items[0].Get("ObjectOwnership").Str(); got != "BucketOwnerEnforced" {
		t.Errorf("ObjectOwnership %q, want BucketOwnerEnforced (ACLs disabled)", got)
	}
	if got := tp.Resource("MailBucket").Get("DeletionPolicy").Str(); got != "Retain" {
		t.Errorf("MailBucket DeletionPolicy %q; mail must survive a stack deletion", got)
	}

	// A Deny on every s3 action, bucket and objects, when not over TLS.
	var tlsDeny bool
	for _, s := range statements(t) {
		n := s.node
		if s.where != "MailBucketPolicy" || n.Get("Effect").Str() != "Deny" || n.Path("Condition", "Bool", "aws:SecureTransport").Str() != "false" {
			continue
		}
		if !slices.Contains(n.Get("Action").Strings(), "s3:*") {
			continue
		}
		var bucket, objects bool
		for _, r := range items(n.Get("Resource")) {
			if res, attr := getAtt(r); res == "MailBucket" && attr == "Arn" {
				bucket = true
			}
			if subText(r) == "${MailBucket.Arn}/*" {
				objects = true
			}
		}
		tlsDeny = tlsDeny || bucket && objects && n.Get("Principal").Str() == "*"
	}
	if !tlsDeny {
		t.Error("MailBucketPolicy has no Deny of s3:* on the bucket and its objects when aws:SecureTransport is false")
	}

	// Expiry for every store prefix.
	rules := b.Path("LifecycleConfiguration", "Rules")
	for _, prefix := range storePrefixes {
		found := false
		for _, r := range rules.Items {
			if r.Get("Prefix").Str() == prefix && r.Get("ExpirationInDays") != nil && r.Get("Status").Str() == "Enabled" {
				found = true
			}
		}
		if !found {
			t.Errorf("no enabled lifecycle rule expires %s", prefix)
		}
	}
}

// S3 notifies the raw queue of new objects under raw/ only, and the queue's
// policy names the bucket by the same expression the bucket is named with.
func TestRawNotifications(t *testing.T) {
	b := props(t, "MailBucket")
	qc := b.Path("NotificationConfiguration", "QueueConfigurations")
	if qc == nil || len(qc.Items) != 1 {
		t.Fatal("want exactly one QueueConfiguration")
	}
	c := qc.Items[0]
	if q, _ := getAtt(c.Get("Queue")); q != "RawQueue" {
		t.Errorf("notifications go to %q, want RawQueue", q)
	}
	if ev := c.Get("Event").Str(); ev != "s3:ObjectCreated:*" {
		t.Errorf("event %q, want s3:ObjectCreated:* (PUT and multipart completion)", ev)
	}
	rules := c.Path("Filter", "S3Key", "Rules")
	if rules == nil || len(rules.Items) != 1 || rules.Items[0].Get("Name").Str() != "prefix" || rules.Items[0].Get("Value").Str() != "raw/" {
		t.Error("filter must be exactly prefix raw/")
	}

	name := b.Get("BucketName")
	var src *cfn.Node
	for _, s := range statements(t) {
		if s.where == "RawQueuePolicy" && s.node.Get("Effect").Str() == "Allow" {
			src = s.node.Path("Condition", "ArnEquals", "aws:SourceArn")
		}
	}
	if src == nil {
		t.Fatal("RawQueuePolicy has no Allow with an aws:SourceArn condition")
	}
	_, nameArg := intrinsic(name)
	_, srcArg := intrinsic(src)
	if nameArg.Kind != cfn.Seq || srcArg.Kind != cfn.Seq ||
		"arn:${AWS::Partition}:s3:::"+nameArg.Items[0].Str() != srcArg.Items[0].Str() ||
		!sameNode(nameArg.Items[1], srcArg.Items[1]) {
		t.Error("RawQueuePolicy's aws:SourceArn does not compute the same bucket name as MailBucket.BucketName")
	}
}

func TestGateway(t *testing.T) {
	tp := template(t)
	td := props(t, "GatewayTaskDefinition")
	if got := td.Path("RuntimePlatform", "CpuArchitecture").Str(); got != "ARM64" {
		t.Errorf("CpuArchitecture %q, want ARM64", got)
	}
	if !slices.Contains(td.Get("RequiresCompatibilities").Strings(), "FARGATE") {
		t.Error("task definition is not for Fargate")
	}
	cs := items(td.Get("ContainerDefinitions"))
	var names []string
	for _, c := range cs {
		names = append(names, c.Get("Name").Str())
	}
	// smtpgw, and the optional scanner sidecars (GatewayRspamd,
	// GatewayClamd), which must not take the task down with them.
	if !slices.Equal(names, []string{"smtpgw", "rspamd", "clamd"}) {
		t.Fatalf("containers %v, want [smtpgw rspamd clamd]", names)
	}
	for _, sc := range cs[1:] {
		if sc.Get("Essential").Str() != "false" {
			t.Errorf("sidecar %s is essential: a scanner that dies must leave the gateway to policy.scanners.fail", sc.Get("Name").Str())
		}
	}
	c := cs[0]
	if c.Get("ReadonlyRootFilesystem").Str() != "true" {
		t.Error("root filesystem is writable")
	}
	if u := c.Get("User").Str(); u == "" || u == "0" || strings.HasPrefix(u, "0:") || u == "root" {
		t.Errorf("container user %q is root", u)
	}
	if cmd := c.Path("HealthCheck", "Command").Strings(); len(cmd) < 2 || cmd[0] != "CMD" {
		t.Errorf("health check %v, want [CMD, /healthcheck]", cmd)
	}
	if st, ok := c.Get("StopTimeout").Int(); !ok || st < 30 || st > 120 {
		t.Errorf("StopTimeout %v: want 30..120 s (Fargate's maximum) for graceful drain", c.Get("StopTimeout").Str())
	}
	env := map[string]*cfn.Node{}
	for _, e := range c.Get("Environment").Items {
		env[e.Get("Name").Str()] = e.Get("Value")
	}
	for _, name := range []string{"LETTERBOX_SMTP_ADDR", "LETTERBOX_HTTP_ADDR", "LETTERBOX_STORE", "LETTERBOX_ROUTES", "LETTERBOX_MAX_MESSAGE_BYTES", "LETTERBOX_MAX_RECIPIENTS", "LETTERBOX_PROXY_PROTOCOL_FROM"} {
		if env[name] == nil {
			t.Errorf("gateway environment lacks %s", name)
		}
	}
	stop, _ := c.Get("StopTimeout").Int()
	if d, err := time.ParseDuration(env["LETTERBOX_SHUTDOWN_TIMEOUT"].Str()); err != nil || d >= time.Duration(stop)*time.Second {
		t.Errorf("LETTERBOX_SHUTDOWN_TIMEOUT %q must be a duration below StopTimeout (%ds)", env["LETTERBOX_SHUTDOWN_TIMEOUT"].Str(), stop)
	}
	var secrets []string
	for _, s := range items(c.Get("Secrets")) {
		secrets = append(secrets, s.Get("Name").Str())
	}
	if !slices.Equal(secrets, []string{"LETTERBOX_TLS_CERT", "LETTERBOX_TLS_KEY"}) {
		t.Errorf("TLS secrets %v", secrets)
	}
	var ports []int
	for _, pm := range c.Get("PortMappings").Items {
		p, _ := pm.Get("ContainerPort").Int()
		ports = append(ports, p)
	}
	if !slices.Equal(ports, []int{2525, 8025}) {
		t.Errorf("container ports %v, want [2525 8025]", ports)
	}

	tg := props(t, "GatewayTargetGroup")
	attrs := map[string]string{}
	for _, a := range tg.Get("TargetGroupAttributes").Items {
		attrs[a.Get("Key").Str()] = a.Get("Value").Str()
	}
	if attrs["proxy_protocol_v2.enabled"] != "true" {
		t.Error("target group does not send PROXY protocol v2")
	}
	if p, _ := tg.Get("Port").Int(); p != 2525 || tg.Get("HealthCheckPort").Str() != "8025" {
		t.Error("target group must forward to 2525 and health-check 8025")
	}

	listenerPorts := map[int]bool{}
	for _, id := range tp.ResourcesOfType("AWS::ElasticLoadBalancingV2::Listener") {
		p, _ := props(t, id).Get("Port").Int()
		listenerPorts[p] = true
	}
	if !listenerPorts[25] {
		t.Error("no listener on port 25")
	}
	for _, rule := range items(props(t, "GatewayLoadBalancerSecurityGroup").Get("SecurityGroupIngress")) {
		from, _ := rule.Get("FromPort").Int()
		to, _ := rule.Get("ToPort").Int()
		if from != to || !slices.Contains([]int{25, 465}, from) {
			t.Errorf("load balancer security group opens %d-%d; only SMTP ports may be open", from, to)
		}
	}
	for _, rule := range items(props(t, "GatewaySecurityGroup").Get("SecurityGroupIngress")) {
		if refTarget(rule.Get("SourceSecurityGroupId")) != "GatewayLoadBalancerSecurityGroup" {
			t.Errorf("line %d: gateway tasks accept traffic from somewhere other than the load balancer", rule.Line)
		}
	}
	if tp.Resource("GatewayService").Get("DependsOn") == nil {
		t.Error("GatewayService must depend on a listener (ECS needs the target group attached)")
	}
	if len(tp.ResourcesOfType("AWS::ApplicationAutoScaling::ScalingPolicy")) == 0 {
		t.Error("no gateway auto scaling policy")
	}
	for i, id := range tp.Resources.Keys {
		if strings.HasPrefix(id, "Gateway") {
			if c := tp.Resources.Vals[i].Get("Condition").Str(); c == "" || !tp.Implies(c, "UseGateway") {
				t.Errorf("%s exists without UseGateway (Condition %q)", id, c)
			}
		}
	}
}

// ifParts returns the condition and both values of an Fn::If, or "".
func ifParts(n *cfn.Node) (cond string, then, els *cfn.Node) {
	if name, arg := intrinsic(n); name == "Fn::If" && arg.Kind == cfn.Seq && len(arg.Items) == 3 {
		return arg.Items[0].Str(), arg.Items[1], arg.Items[2]
	}
	return "", nil, nil
}

// walk calls f for n and every node under it.
func walk(n *cfn.Node, f func(*cfn.Node)) {
	if n == nil {
		return
	}
	f(n)
	for _, it := range n.Items {
		walk(it, f)
	}
	for _, v := range n.Vals {
		walk(v, f)
	}
}

// Forward actions: the SRS key is a secret CloudFormation generates, only
// when ForwardSrsDomain is set; the deliver function gets the domain and
// the secret's ARN under that condition only, and may read that secret and
// no other. No secret value is in the template, its parameters or any
// function's environment.
func TestForwarding(t *testing.T) {
	tp := template(t)
	if p := tp.Parameters.Get("ForwardSrsDomain"); p == nil || p.Get("Default") == nil || p.Get("Default").Str() != "" {
		t.Error(`no parameter ForwardSrsDomain with Default "" (forwarding off unless asked for)`)
	}
	// UseForwarding: !Not [!Equals [!Ref ForwardSrsDomain, ""]]
	cond := tp.Conditions.Get("UseForwarding")
	if name, arg := intrinsic(cond); name != "Fn::Not" || arg.Kind != cfn.Seq || len(arg.Items) != 1 {
		t.Error("condition UseForwarding must be !Not [!Equals [!Ref ForwardSrsDomain, \"\"]]")
	} else if name, eq := intrinsic(arg.Items[0]); name != "Fn::Equals" || eq.Kind != cfn.Seq || len(eq.Items) != 2 ||
		refTarget(eq.Items[0]) != "ForwardSrsDomain" || eq.Items[1].Kind != cfn.Scalar || eq.Items[1].Str() != "" {
		t.Error("condition UseForwarding must be !Not [!Equals [!Ref ForwardSrsDomain, \"\"]]")
	}

	secrets := tp.ResourcesOfType("AWS::SecretsManager::Secret")
	if !slices.Equal(secrets, []string{"ForwardSrsSecret", "LinkKeySecret"}) {
		t.Errorf("secrets %v, want [ForwardSrsSecret LinkKeySecret]", secrets)
	}
	if c := tp.Resource("ForwardSrsSecret").Get("Condition").Str(); c != "UseForwarding" {
		t.Errorf("ForwardSrsSecret has Condition %q, want UseForwarding", c)
	}
	for _, id := range secrets {
		p := props(t, id)
		if p.Get("SecretString") != nil {
			t.Errorf("line %d: %s has a SecretString: its value would be in the template", p.Get("SecretString").Line, id)
		}
		g := p.Get("GenerateSecretString")
		if n, ok := g.Get("PasswordLength").Int(); !ok || n < 32 {
			t.Errorf("%s: GenerateSecretString.PasswordLength %v, want a literal of at least 32", id, g.Get("PasswordLength").Str())
		}
		if g.Get("ExcludePunctuation").Str() != "true" {
			t.Errorf("%s: GenerateSecretString.ExcludePunctuation must be true (a key safe to paste into a shell or postsrsd's configuration)", id)
		}
		if g.Get("SecretStringTemplate") != nil {
			t.Errorf("%s: SecretStringTemplate makes a JSON secret; the deliver function reads the plain string", id)
		}
	}

	// The deliver function's forwarding variables exist under UseForwarding only.
	env := functionEnv(t, "DeliverFunction")
	for name, want := range map[string]string{"LETTERBOX_SRS_DOMAIN": "ForwardSrsDomain", "LETTERBOX_SRS_SECRET_ARN": "ForwardSrsSecret", "LETTERBOX_FORWARD_HELO": "ForwardHelo"} {
		c, then, els := ifParts(env[name])
		if c != "UseForwarding" || refTarget(then) != want || !els.IsNoValue() {
			t.Errorf("DeliverFunction: %s must be !If [UseForwarding, !Ref %s, !Ref AWS::NoValue]", name, want)
		}
	}
	for _, id := range functions(t) {
		for name, v := range functionEnv(t, id) {
			// The ingest function sees the SRS domain (public) only to
			// refuse forward actions where forwarding is not configured.
			if id != "DeliverFunction" && !(id == "IngestFunction" && name == "LETTERBOX_SRS_DOMAIN") &&
				(strings.HasPrefix(name, "LETTERBOX_SRS_") || strings.HasPrefix(name, "LETTERBOX_FORWARD_")) {
				t.Errorf("%s: %s; only the deliver function forwards", id, name)
			}
			if secretish(name) && !strings.HasSuffix(name, "_ARN") {
				t.Errorf("line %d: %s: %s would hold a secret's value in the function's configuration; pass an ARN", v.Line, id, name)
			}
			walk(v, func(n *cfn.Node) {
				if strings.Contains(n.Str(), "{{resolve:") {
					t.Errorf("line %d: %s: %s resolves a dynamic reference into the function's configuration, in clear", n.Line, id, name)
				}
			})
		}
	}
	// Nor is a secret passed in as a parameter.
	for i, name := range tp.Parameters.Keys {
		p := tp.Parameters.Vals[i]
		if p.Get("NoEcho") != nil || secretish(name) && !strings.HasSuffix(name, "Arn") {
			t.Errorf("line %d: parameter %s looks like a secret value; generate it in Secrets Manager instead", p.Line, name)
		}
	}

	// Every secretsmanager permission is GetSecretValue on one named
	// secret; the deliver role's is on ForwardSrsSecret under UseForwarding.
	for _, s := range statements(t) {
		for _, a := range items(s.node.Get("Action")) {
			if !strings.HasPrefix(strings.ToLower(a.Str()), "secretsmanager:") {
				continue
			}
			if a.Str() != "secretsmanager:GetSecretValue" {
				t.Errorf("line %d: %s: %s; only secretsmanager:GetSecretValue is needed", a.Line, s.where, a.Str())
			}
			res := items(s.node.Get("Resource"))
			if len(res) != 1 || res[0].Kind == cfn.Scalar {
				t.Errorf("line %d: %s: secretsmanager on %d resources or a literal; want one !Ref", s.node.Line, s.where, len(res))
			}
		}
	}
	// The deliver role reads three secrets, two under their own condition:
	// the stack's SRS key and the operator's secret of variables
	// (TestDeliverSecret); and, always, the link key (TestLinkFunction).
	checkGrants(t, "DeliverRole", "secretsmanager:", []grant{
		{"UseForwarding", "secretsmanager:GetSecretValue", "ForwardSrsSecret"},
		{"HasDeliverSecret", "secretsmanager:GetSecretValue", "DeliverSecretArn"},
		{"", "secretsmanager:GetSecretValue", "LinkKeySecret"},
	})
	for _, name := range []string{"ForwardSrsSecretArn", "ForwardSrsRotateCommand"} {
		if o := tp.Outputs.Get(name); o == nil || o.Get("Condition").Str() != "UseForwarding" {
			t.Errorf("no output %s with Condition UseForwarding", name)
		}
	}
}

// grant is a statement a role must have: Allow Action (comma-separated
// when several) on !Ref Resource, inside !If [Cond, ..., !Ref AWS::NoValue]
// (Cond "": unconditional).
type grant struct{ Cond, Action, Resource string }

// checkGrants checks that role's statements with an action starting with
// prefix are exactly want, each once.
func checkGrants(t *testing.T, role, prefix string, want []grant) {
	t.Helper()
	var got []grant
	for _, pol := range items(props(t, role).Get("Policies")) {
		for _, st := range pol.Path("PolicyDocument", "Statement").Items {
			c, then, els := ifParts(st)
			for _, b := range branches(st) {
				acts := b.Get("Action").Strings()
				if !slices.ContainsFunc(items(b.Get("Action")), func(a *cfn.Node) bool { return strings.HasPrefix(a.Str(), prefix) }) {
					continue
				}
				if c != "" && (then != b || !els.IsNoValue()) {
					t.Errorf("line %d: %s: %v outside !If [CONDITION, ..., !Ref AWS::NoValue]", b.Line, role, acts)
					continue
				}
				res := items(b.Get("Resource"))
				if b.Get("Effect").Str() != "Allow" || len(res) != 1 || refTarget(res[0]) == "" {
					t.Errorf("line %d: %s: want Allow on one !Ref", b.Line, role)
					continue
				}
				got = append(got, grant{c, strings.Join(acts, ","), refTarget(res[0])})
			}
		}
	}
	cmp := func(a, b grant) int { return strings.Compare(a.Cond+a.Action+a.Resource, b.Cond+b.Action+b.Resource) }
	slices.SortFunc(got, cmp)
	want = slices.Clone(want)
	slices.SortFunc(want, cmp)
	if !slices.Equal(got, want) {
		t.Errorf("%s: %s statements %+v, want %+v", role, prefix, got, want)
	}
}

// The operator's own secret (DeliverSecretArn): a JSON object of variables
// for the deliver function (secret_env, password_env, LETTERBOX_ARC_KEY).
// Only its ARN is in the function's environment, only when the parameter is
// set; only the deliver role may read it, and decrypt with its KMS key only
// through Secrets Manager and only when that key is given.
func TestDeliverSecret(t *testing.T) {
	tp := template(t)
	for _, name := range []string{"DeliverSecretArn", "DeliverSecretKmsKeyArn"} {
		p := tp.Parameters.Get(name)
		if p == nil || p.Get("Default") == nil || p.Get("Default").Str() != "" || p.Get("AllowedPattern") == nil {
			t.Errorf(`no parameter %s with Default "" and an AllowedPattern`, name)
		}
	}
	if pat := tp.Parameters.Get("DeliverSecretArn").Get("AllowedPattern").Str(); !strings.Contains(pat, ":secretsmanager:") {
		t.Errorf("DeliverSecretArn's AllowedPattern %q does not require a Secrets Manager ARN", pat)
	}
	// HasDeliverSecret: !Not [!Equals [!Ref DeliverSecretArn, ""]]
	if name, arg := intrinsic(tp.Conditions.Get("HasDeliverSecret")); name != "Fn::Not" || arg.Kind != cfn.Seq || len(arg.Items) != 1 {
		t.Error(`condition HasDeliverSecret must be !Not [!Equals [!Ref DeliverSecretArn, ""]]`)
	} else if name, eq := intrinsic(arg.Items[0]); name != "Fn::Equals" || eq.Kind != cfn.Seq || len(eq.Items) != 2 ||
		refTarget(eq.Items[0]) != "DeliverSecretArn" || eq.Items[1].Kind != cfn.Scalar || eq.Items[1].Str() != "" {
		t.Error(`condition HasDeliverSecret must be !Not [!Equals [!Ref DeliverSecretArn, ""]]`)
	}
	// HasDeliverSecretKmsKey: !And [!Condition HasDeliverSecret, ...]
	if name, arg := intrinsic(tp.Conditions.Get("HasDeliverSecretKmsKey")); name != "Fn::And" || arg.Kind != cfn.Seq ||
		!slices.ContainsFunc(arg.Items, func(n *cfn.Node) bool { c, a := intrinsic(n); return c == "Condition" && a.Str() == "HasDeliverSecret" }) {
		t.Error("condition HasDeliverSecretKmsKey must imply HasDeliverSecret")
	}

	c, then, els := ifParts(functionEnv(t, "DeliverFunction")["LETTERBOX_SECRETS_ARN"])
	if c != "HasDeliverSecret" || refTarget(then) != "DeliverSecretArn" || !els.IsNoValue() {
		t.Error("DeliverFunction: LETTERBOX_SECRETS_ARN must be !If [HasDeliverSecret, !Ref DeliverSecretArn, !Ref AWS::NoValue]")
	}
	for _, id := range functions(t) {
		if _, ok := functionEnv(t, id)["LETTERBOX_SECRETS_ARN"]; ok && id != "DeliverFunction" {
			t.Errorf("%s: LETTERBOX_SECRETS_ARN; only the deliver function resolves secret_env and password_env", id)
		}
	}

	// Only the deliver role mentions the secret or its key (the
	// secretsmanager grant itself is checked in TestForwarding).
	checkGrants(t, "DeliverRole", "kms:Decrypt", []grant{
		{"HasDeliverSecretKmsKey", "kms:Decrypt", "DeliverSecretKmsKeyArn"},
		{"UseKms", "kms:Decrypt,kms:GenerateDataKey", "KmsKeyArn"}, // the bucket's key
	})
	for _, s := range statements(t) {
		mentions := false
		walk(s.node, func(n *cfn.Node) {
			if r := refTarget(n); r == "DeliverSecretArn" || r == "DeliverSecretKmsKeyArn" {
				mentions = true
			}
		})
		if mentions && !strings.HasPrefix(s.where, "DeliverRole/") {
			t.Errorf("line %d: %s refers to the deliver function's secret", s.node.Line, s.where)
		}
		if !slices.ContainsFunc(items(s.node.Get("Resource")), func(n *cfn.Node) bool { return refTarget(n) == "DeliverSecretKmsKeyArn" }) {
			continue
		}
		via := s.node.Path("Condition", "StringEquals", "kms:ViaService")
		if subText(via) != "secretsmanager.${AWS::Region}.amazonaws.com" {
			t.Errorf("line %d: %s: kms:Decrypt on DeliverSecretKmsKeyArn without the condition kms:ViaService = secretsmanager.${AWS::Region}.amazonaws.com", s.node.Line, s.where)
		}
	}
	if o := tp.Outputs.Get("DeliverSecretReloadCommand"); o == nil || o.Get("Condition").Str() != "HasDeliverSecret" {
		t.Error("no output DeliverSecretReloadCommand with Condition HasDeliverSecret")
	}

	// No secret value is written into the template: the secret is the
	// operator's, created outside the stack.
	b, err := os.ReadFile(filepath.Join(root(t), "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, lit := range []string{"whsec_", "-----BEGIN"} { // no SecretString: TestForwarding
		if strings.Contains(string(b), lit) {
			t.Errorf("template.yaml contains %q: a secret's value belongs in Secrets Manager", lit)
		}
	}
}

// secretish reports whether a name says it holds a secret.
func secretish(name string) bool {
	n := strings.ToLower(name)
	return strings.Contains(n, "secret") || strings.Contains(n, "password") || strings.Contains(n, "token") || strings.HasSuffix(n, "_key")
}

// The SES receipt rule writes into the prefix the raw queue is notified
// for, and the bucket policy lets exactly that rule write there.
func TestSESIngress(t *testing.T) {
	tp := template(t)
	rule := props(t, "InboundRule").Get("Rule")
	var prefixes []string
	for _, a := range rule.Get("Actions").Items {
		if s3 := a.Get("S3Action"); s3 != nil {
			prefixes = append(prefixes, s3.Get("ObjectKeyPrefix").Str())
			if refTarget(s3.Get("BucketName")) != "MailBucket" {
				t.Error("SES writes to another bucket than MailBucket")
			}
		}
	}
	if !slices.Equal(prefixes, []string{"raw/"}) {
		t.Errorf("SES S3 actions write to %v, want [raw/]", prefixes)
	}
	if refTarget(rule.Get("Recipients")) != "Domains" {
		t.Error("SES rule does not receive for the Domains parameter")
	}
	ruleName := subText(rule.Get("Name"))
	setName := subText(props(t, "InboundRuleSet").Get("RuleSetName"))
	var granted bool
	for _, s := range statements(t) {
		n := s.node
		if s.where != "MailBucketPolicy" || n.Path("Principal", "Service").Str() != "ses.amazonaws.com" {
			continue
		}
		granted = true
		if subText(n.Get("Resource")) != "${MailBucket.Arn}/raw/*" {
			t.Error("SES may write outside raw/")
		}
		if n.Path("Condition", "StringEquals", "AWS:SourceAccount") == nil {
			t.Error("SES grant lacks an AWS:SourceAccount condition")
		}
		want := "receipt-rule-set/" + setName + ":receipt-rule/" + ruleName
		if src := subText(n.Path("Condition", "ArnLike", "AWS:SourceArn")); !strings.HasSuffix(src, want) {
			t.Errorf("SES grant's SourceArn %q does not end with %q", src, want)
		}
	}
	if !granted {
		t.Error("MailBucketPolicy does not let SES write")
	}
	if got := tp.Resource("InboundRule").Get("DependsOn").Strings(); !slices.Contains(got, "MailBucketPolicy") {
		t.Error("InboundRule must depend on MailBucketPolicy: SES tests its write when the rule is created")
	}
}

func TestAlarms(t *testing.T) {
	tp := template(t)
	watched := map[string]bool{}
	for _, id := range tp.ResourcesOfType("AWS::CloudWatch::Alarm") {
		p := props(t, id)
		if !slices.ContainsFunc(p.Get("AlarmActions").Items, func(n *cfn.Node) bool { return refTarget(n) == "AlarmTopic" }) {
			t.Errorf("%s does not notify AlarmTopic", id)
		}
		for _, d := range p.Get("Dimensions").Items {
			target := refTarget(d.Get("Value"))
			if res, _ := getAtt(d.Get("Value")); res != "" {
				target = res
			}
			watched[p.Get("MetricName").Str()+"/"+target] = true
		}
	}
	for _, want := range []string{
		"ApproximateNumberOfMessagesVisible/RawDeadLetterQueue",
		"ApproximateNumberOfMessagesVisible/DeliveryDeadLetterQueue",
		"ApproximateAgeOfOldestMessage/RawQueue",
		"ApproximateAgeOfOldestMessage/DeliveryQueue",
		"Errors/IngestFunction",
		"Errors/DeliverFunction",
		"UnHealthyHostCount/GatewayTargetGroup",
		"HealthyHostCount/GatewayTargetGroup",
	} {
		if !watched[want] {
			t.Errorf("no alarm on %s", want)
		}
	}
	if tp.Resource("AlarmSubscription").Path("Properties", "Protocol").Str() != "email" {
		t.Error("no e-mail subscription for the alarm topic")
	}
}

func TestOutputs(t *testing.T) {
	for _, name := range []string{"BucketName", "Store", "RoutesLocation", "RawQueueUrl", "DeliveryQueueUrl",
		"RawDeadLetterQueueUrl", "DeliveryDeadLetterQueueUrl", "MxTarget", "MxRecord", "SesMxRecord",
		"SesActivateCommand", "SpfRecordSuggestion", "AlarmTopicArn", "DashboardUrl"} {
		if template(t).Outputs.Get(name) == nil {
			t.Errorf("no output %s", name)
		}
	}
}

// evaluate computes a string from Fn::Join, Fn::Sub, Fn::If and Ref with
// placeholders for what only a deployment knows.
func evaluate(n *cfn.Node, conds map[string]bool) (string, error) {
	name, arg, ok := n.Intrinsic()
	if !ok {
		if n.Kind != cfn.Scalar {
			return "", fmt.Errorf("line %d: not a string", n.Line)
		}
		return n.Value, nil
	}
	switch name {
	case "Ref":
		return "ref-" + arg.Str(), nil
	case "Fn::Sub":
		s := subText(n)
		for _, v := range cfn.SubVariables(s) {
			s = strings.ReplaceAll(s, "${"+v+"}", "sub-"+strings.ReplaceAll(v, ":", "-"))
		}
		return s, nil
	case "Fn::If":
		if conds[arg.Items[0].Str()] {
			return evaluate(arg.Items[1], conds)
		}
		return evaluate(arg.Items[2], conds)
	case "Fn::Join":
		var parts []string
		for _, it := range arg.Items[1].Items {
			s, err := evaluate(it, conds)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, arg.Items[0].Str()), nil
	}
	return "", fmt.Errorf("line %d: cannot evaluate %s", n.Line, name)
}

func TestDashboardBodyIsJSON(t *testing.T) {
	body := props(t, "Dashboard").Get("DashboardBody")
	for _, gw := range []bool{true, false} {
		s, err := evaluate(body, map[string]bool{"UseGateway": gw})
		if err != nil {
			t.Fatal(err)
		}
		var v struct{ Widgets []json.RawMessage }
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Errorf("UseGateway=%v: dashboard body is not JSON: %v\n%s", gw, err, s)
			continue
		}
		if want := map[bool]int{true: 9, false: 6}[gw]; len(v.Widgets) != want {
			t.Errorf("UseGateway=%v: %d widgets, want %d", gw, len(v.Widgets), want)
		}
	}
}

// The attachment link function (internal/links): a public function URL
// whose role can read the linkable prefixes of the bucket and the link key,
// and nothing else; the deliver function signs with the same key and
// points links at the function's URL.
func TestLinkFunction(t *testing.T) {
	tp := template(t)
	p := props(t, "LinkFunction")
	if got := p.Path("FunctionUrlConfig", "AuthType").Str(); got != "NONE" {
		t.Errorf("LinkFunction: FunctionUrlConfig.AuthType %q, want NONE (the token is the authorisation)", got)
	}
	if m, ok := p.Get("MemorySize").Int(); !ok || m > 256 {
		t.Errorf("LinkFunction: MemorySize %v, want a literal of at most 256", p.Get("MemorySize").Str())
	}
	if n, ok := p.Get("Timeout").Int(); !ok || n > 30 {
		t.Errorf("LinkFunction: Timeout %v, want a literal of at most 30", p.Get("Timeout").Str())
	}
	if r, _ := getAtt(p.Get("Role")); r != "LinkRole" {
		t.Errorf("LinkFunction: Role %q, want !GetAtt LinkRole.Arn", r)
	}
	if got := refTarget(p.Path("LoggingConfig", "LogGroup")); got != "LinkLogGroup" {
		t.Errorf("LinkFunction: LogGroup %q, want LinkLogGroup", got)
	}
	if own := p.Path("Environment", "Variables"); own == nil || !slices.Equal(own.Keys, []string{"LETTERBOX_LINK_KEY_ARN"}) || refTarget(own.Get("LETTERBOX_LINK_KEY_ARN")) != "LinkKeySecret" {
		t.Error("LinkFunction: its own environment must be exactly LETTERBOX_LINK_KEY_ARN: !Ref LinkKeySecret")
	}
	if tp.Resource("LinkKeySecret").Get("Condition") != nil {
		t.Error("LinkKeySecret has a Condition; every stack links attachments")
	}

	env := functionEnv(t, "DeliverFunction")
	if r, a := getAtt(env["LETTERBOX_LINK_BASE_URL"]); r != "LinkFunctionUrl" || a != "FunctionUrl" {
		t.Error("DeliverFunction: LETTERBOX_LINK_BASE_URL must be !GetAtt LinkFunctionUrl.FunctionUrl")
	}
	if refTarget(env["LETTERBOX_LINK_KEY_ARN"]) != "LinkKeySecret" {
		t.Error("DeliverFunction: LETTERBOX_LINK_KEY_ARN must be !Ref LinkKeySecret")
	}

	// Every permission of the link role, exactly. Its s3:GetObject is on
	// the prefixes internal/links may link, which are what its presigned
	// URLs can reach.
	var objects []string
	for _, prefix := range links.Linkable {
		objects = append(objects, "s3:GetObject ${MailBucket.Arn}/"+prefix+"*")
	}
	want := append(objects,
		"logs:CreateLogStream LinkLogGroup.Arn", "logs:PutLogEvents LinkLogGroup.Arn",
		"s3:ListBucket MailBucket.Arn",
		"secretsmanager:GetSecretValue LinkKeySecret",
		"kms:Decrypt KmsKeyArn")
	var got []string
	for _, s := range statements(t) {
		if !strings.HasPrefix(s.where, "LinkRole/") {
			if refs := func() (n int) {
				walk(s.node, func(x *cfn.Node) {
					if refTarget(x) == "LinkKeySecret" {
						n++
					}
				})
				return
			}(); refs > 0 && !strings.HasPrefix(s.where, "DeliverRole/") {
				t.Errorf("line %d: %s may read the link key; only LinkRole and DeliverRole may", s.node.Line, s.where)
			}
			continue
		}
		if s.node.Get("Effect").Str() != "Allow" || s.node.Get("Condition") != nil {
			t.Errorf("line %d: LinkRole: want Allow statements without conditions", s.node.Line)
		}
		for _, a := range items(s.node.Get("Action")) {
			for _, r := range items(s.node.Get("Resource")) {
				res := subText(r)
				if id, attr := getAtt(r); id != "" {
					res = id + "." + attr
				} else if ref := refTarget(r); ref != "" {
					res = ref
				}
				got = append(got, a.Str()+" "+res)
			}
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("LinkRole grants\n  %s\nwant exactly\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	checkGrants(t, "LinkRole", "kms:", []grant{{"UseKms", "kms:Decrypt", "KmsKeyArn"}})
	checkGrants(t, "LinkRole", "secretsmanager:", []grant{{"", "secretsmanager:GetSecretValue", "LinkKeySecret"}})

	for _, name := range []string{"LinkBaseUrl", "LinkKeyRotateCommand"} {
		if tp.Outputs.Get(name) == nil {
			t.Errorf("no output %s", name)
		}
	}
	if !strings.Contains(subText(tp.Outputs.Get("LinkKeyRotateCommand").Get("Value")), "${LinkFunction}") {
		t.Error("LinkKeyRotateCommand does not restart the link function, whose instances read the key at cold start")
	}
}
