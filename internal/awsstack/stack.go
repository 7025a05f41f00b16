// Package awsstack runs the deployed stack on this machine: template.yaml
// (parameters at their defaults, or as given) decides every setting, and the
// real artefacts run under the real runtime protocols: the functions'
// bootstraps under the Lambda Runtime Interface Emulator (lambdalocal), SQS
// as internal/sqslocal with the template's queue attributes, S3 as versitygw
// with the bucket's notification configuration feeding the raw queue, the
// event source mappings as Lambda's SQS poller behaves (Poller), function
// URLs as loopback servers speaking Lambda's payload format 2.0
// (FunctionURL), Secrets Manager's GetSecretValue for the template's
// generated secrets (Secrets), and the smtpgw binary with its ECS task
// definition's environment.
//
// Not modelled: IAM and resource policies, cross-account access, network
// latency, Lambda's scaling (one execution environment per function), ECS
// and the load balancer (the gateway is one process). docs/deploy.md lists
// what the stand-ins leave out.
//
// Test support: the tests are built with the awsstack tag and run by
// `make test-aws`.
package awsstack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/letterboxmail/letterbox/internal/lambdalocal"
	"github.com/letterboxmail/letterbox/internal/sqslocal"
	"github.com/letterboxmail/letterbox/internal/testenv"
)

// Options configures Start.
type Options struct {
	// Template is template.yaml; Params override parameter defaults.
	Template string
	Params   map[string]string
	// Bin holds the artefacts: <LogicalId>/bootstrap per function, smtpgw.
	Bin string
	// Emulator is aws-lambda-rie.
	Emulator string
	// Routes is the routes file, stored where the template's RoutesKey says.
	Routes []byte
	// RoutesFunc, when set, gives the routes once SQS runs (for routes
	// that name a queue of the stack).
	RoutesFunc func(*Stack) []byte
	// Clock is sqslocal's clock (default: the wall clock).
	Clock sqslocal.Clock
	// Endpoints of the publish actions' services: AWS_ENDPOINT_URL_<SERVICE>
	// for LAMBDA, SNS, EVENTBRIDGE. Secrets Manager is the stack's own
	// (Stack.Secrets).
	Endpoints map[string]string
	// Output receives every component's output; nil discards it.
	Output io.Writer
	// NoPollers leaves the event source mappings stopped.
	NoPollers bool
}

// Stack is the running stand-in.
type Stack struct {
	T         *Template
	Bucket    string
	Versity   *testenv.Versity
	S3        *S3Counter
	SQS       *sqslocal.Server
	SQSClient *sqs.Client
	S3Client  *s3.Client
	Notifier  *Notifier
	Functions map[string]*lambdalocal.Function
	Specs     map[string]*FunctionSpec
	Pollers   []*Poller
	Gateway   *Gateway
	// Secrets is Secrets Manager: the template's secrets, generated.
	Secrets *Secrets
	// URLs are the functions' URLs (FunctionUrlConfig), by function id.
	URLs map[string]*FunctionURL

	mu          sync.Mutex
	invocations []Invocation
	queueURLs   map[string]string // by ARN
	out         io.Writer
}

// Start brings the stack up and stops it when the test ends.
func Start(tb testing.TB, o Options) *Stack {
	tb.Helper()
	ctx := context.Background()
	out := o.Output
	if out == nil {
		out = io.Discard
	}
	tp, err := LoadTemplate(o.Template, o.Params)
	if err != nil {
		tb.Fatal(err)
	}
	st := &Stack{T: tp, Functions: map[string]*lambdalocal.Function{}, Specs: map[string]*FunctionSpec{}, URLs: map[string]*FunctionURL{},
		queueURLs: map[string]string{}, out: out}

	bucket, err := tp.String(tp.T.Resource("MailBucket").Path("Properties", "BucketName"))
	if err != nil {
		tb.Fatal(err)
	}
	st.Bucket = bucket
	tp.Refs["MailBucket"] = bucket
	tp.Attrs["MailBucket.Arn"] = "arn:aws:s3:::" + bucket

	// SQS: every queue with the template's attributes, dead-letter queues first.
	st.SQS = sqslocal.New(sqslocal.Options{Region: Region, AccountID: AccountID, Clock: o.Clock})
	if err := st.SQS.Start("127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.SQS.Close() })
	for _, id := range tp.Queues() {
		name := StackName + "-" + id
		tp.Refs[id] = st.SQS.QueueURL(name)
		tp.Attrs[id+".Arn"] = st.SQS.QueueARN(name)
		tp.Attrs[id+".QueueName"] = name
		st.queueURLs[st.SQS.QueueARN(name)] = st.SQS.QueueURL(name)
	}
	for _, id := range tp.Queues() {
		qs, err := tp.Queue(id)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := st.SQS.CreateQueue(StackName+"-"+id, qs.Attrs); err != nil {
			tb.Fatalf("queue %s: %v", id, err)
		}
	}
	// Secrets Manager: every secret the template creates, its value
	// generated as GenerateSecretString says.
	if _, ok := o.Endpoints["SECRETS_MANAGER"]; ok {
		tb.Fatal("awsstack: Options.Endpoints names SECRETS_MANAGER; the stack serves its own (Stack.Secrets)")
	}
	st.Secrets = StartSecrets(tb)
	if err := st.Secrets.Generate(tp); err != nil {
		tb.Fatal(err)
	}
	// Function URLs (SAM's FunctionUrlConfig makes <Function>Url): their
	// addresses are known before any function's environment names them.
	for _, id := range tp.T.ResourcesOfType("AWS::Serverless::Function") {
		if tp.T.Resource(id).Path("Properties", "FunctionUrlConfig") == nil {
			continue
		}
		u, err := ListenFunctionURL(StackName+"-"+id, id+"Url", st.record)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(u.Close)
		st.URLs[id] = u
		tp.Attrs[id+"Url.FunctionUrl"] = u.URL()
	}

	// Credentials: versitygw checks them; sqslocal and the other endpoints
	// accept any.
	const access, secret = "letterbox-test-access", "letterbox-test-secret"
	creds := credentials.NewStaticCredentialsProvider(access, secret, "")
	// The pollers stand for Lambda's service and must not lose a receive
	// to the SDK's body handling (sqslocal.HTTPClient says why); the
	// functions keep the SDK's own client.
	st.SQSClient = sqs.New(sqs.Options{Region: Region, Credentials: creds, BaseEndpoint: aws.String(st.SQS.URL()), HTTPClient: sqslocal.HTTPClient()})

	rules, err := tp.BucketNotifications("MailBucket")
	if err != nil {
		tb.Fatal(err)
	}
	st.Notifier = &Notifier{Bucket: bucket, Rules: rules, QueueURL: st.QueueURL, SQS: st.SQSClient, Log: out}
	if err := st.Notifier.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Notifier.Close)
	st.Versity = testenv.StartVersity(tb, testenv.VersityOptions{Bucket: bucket, Region: Region, EventWebhookURL: st.Notifier.URL()})
	if st.S3, err = StartS3Counter(st.Versity.Endpoint, out); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.S3.Close)
	st.S3Client = s3.New(s3.Options{Region: Region, Credentials: credentials.NewStaticCredentialsProvider(st.Versity.AccessKey, st.Versity.SecretKey, ""),
		BaseEndpoint: aws.String(st.Versity.Endpoint), UsePathStyle: true})

	// The routes file where the template points the functions.
	routesKey := tp.Params["RoutesKey"]
	if o.RoutesFunc != nil {
		o.Routes = o.RoutesFunc(st)
	}
	if _, err := st.S3Client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(routesKey), Body: bytes.NewReader(o.Routes)}); err != nil {
		tb.Fatalf("put routes: %v", err)
	}

	awsEnv := []string{
		"AWS_ACCESS_KEY_ID=" + st.Versity.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + st.Versity.SecretKey,
		"AWS_REGION=" + Region,
		"AWS_DEFAULT_REGION=" + Region,
		"AWS_ENDPOINT_URL_S3=" + st.S3.Endpoint(),
		"AWS_ENDPOINT_URL_SQS=" + st.SQS.URL(),
		"AWS_CONFIG_FILE=/nonexistent/aws-config",
		"AWS_SHARED_CREDENTIALS_FILE=/nonexistent/aws-credentials",
	}
	for _, k := range sortedKeys(o.Endpoints) {
		awsEnv = append(awsEnv, "AWS_ENDPOINT_URL_"+k+"="+o.Endpoints[k])
	}
	awsEnv = append(awsEnv, "AWS_ENDPOINT_URL_SECRETS_MANAGER="+st.Secrets.URL)

	for _, id := range tp.T.ResourcesOfType("AWS::Serverless::Function") {
		spec, err := tp.Function(id)
		if err != nil {
			tb.Fatal(err)
		}
		env := append([]string{}, awsEnv...)
		for _, k := range sortedKeys(spec.Env) {
			env = append(env, k+"="+spec.Env[k])
		}
		if spec.LogFormat != "" {
			env = append(env, "AWS_LAMBDA_LOG_FORMAT="+spec.LogFormat)
		}
		if spec.LogLevel != "" {
			env = append(env, "AWS_LAMBDA_LOG_LEVEL="+spec.LogLevel)
		}
		f := lambdalocal.New(lambdalocal.Config{Name: StackName + "-" + id, Bootstrap: filepath.Join(o.Bin, id, "bootstrap"),
			Emulator: o.Emulator, Env: env, MemoryMB: spec.MemoryMB, Timeout: spec.Timeout, Output: out})
		tb.Cleanup(f.Close)
		st.Functions[id], st.Specs[id] = f, spec
		if u := st.URLs[id]; u != nil {
			if spec.URLAuthType != "NONE" {
				tb.Fatalf("%s: FunctionUrlConfig AuthType %q: the stand-in serves AuthType NONE only", id, spec.URLAuthType)
			}
			u.Serve(f)
		}
		for _, ev := range spec.Events {
			p := &Poller{Spec: ev, QueueURL: st.QueueURL(ev.QueueARN), SQS: st.SQSClient, Function: f, Region: Region, Log: out,
				Invoked: st.record}
			if p.QueueURL == "" {
				tb.Fatalf("%s event %s: no queue %s", id, ev.Name, ev.QueueARN)
			}
			st.Pollers = append(st.Pollers, p)
		}
	}
	if !o.NoPollers {
		st.StartPollers()
	}

	if cond, err := tp.Condition("UseGateway"); err != nil {
		tb.Fatal(err)
	} else if cond {
		env, err := tp.ContainerEnv("GatewayTaskDefinition", "smtpgw")
		if err != nil {
			tb.Fatal(err)
		}
		st.Gateway, err = NewGateway(filepath.Join(o.Bin, "smtpgw"), env, append(awsEnv, "TMPDIR="+tb.TempDir()), out)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(st.Gateway.Kill)
		if err := st.Gateway.Start(ctx, 30*time.Second); err != nil {
			tb.Fatal(err)
		}
	}
	return st
}

// StartPollers starts the event source mappings.
func (st *Stack) StartPollers() {
	for _, p := range st.Pollers {
		p.Start(context.Background())
	}
}

// StopPollers stops them.
func (st *Stack) StopPollers() {
	for _, p := range st.Pollers {
		p.Stop()
	}
}

// QueueURL returns the URL of the queue with that ARN, or "".
func (st *Stack) QueueURL(arn string) string { return st.queueURLs[arn] }

func (st *Stack) record(inv Invocation) {
	st.mu.Lock()
	st.invocations = append(st.invocations, inv)
	st.mu.Unlock()
}

// Invocations returns the invocations so far, in order.
func (st *Stack) Invocations() []Invocation {
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]Invocation(nil), st.invocations...)
}

// ResetCounters zeroes the invocation record and the S3 and SQS counters.
func (st *Stack) ResetCounters() {
	st.mu.Lock()
	st.invocations = nil
	st.mu.Unlock()
	st.S3.Reset()
	st.SQS.ResetUsage()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Gateway is the smtpgw process with its task definition's environment,
// on loopback ports in place of the container's :2525 and :8025.
type Gateway struct {
	Bin                string
	Env                []string
	SMTPAddr, HTTPAddr string
	out                io.Writer

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	logBytes atomic.Int64
}

// LogBytes is how much the gateway has logged: what its awslogs driver
// would send to CloudWatch Logs.
func (g *Gateway) LogBytes() int64 { return g.logBytes.Load() }

// NewGateway prepares the gateway on two free loopback ports.
func NewGateway(bin string, taskEnv map[string]string, extra []string, out io.Writer) (*Gateway, error) {
	smtpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	taskEnv["LETTERBOX_SMTP_ADDR"], taskEnv["LETTERBOX_HTTP_ADDR"] = smtpAddr, httpAddr
	env := []string{"PATH=" + os.Getenv("PATH")}
	for _, k := range sortedKeys(taskEnv) {
		if k == "TMPDIR" {
			continue // the task's /tmp: a test directory here
		}
		env = append(env, k+"="+taskEnv[k])
	}
	return &Gateway{Bin: bin, Env: append(env, extra...), SMTPAddr: smtpAddr, HTTPAddr: httpAddr, out: out}, nil
}

// Start runs the gateway and waits for /readyz.
func (g *Gateway) Start(ctx context.Context, timeout time.Duration) error {
	g.mu.Lock()
	cmd := exec.Command(g.Bin)
	cmd.Env = g.Env
	w := &linePrefixer{w: g.out, prefix: "smtpgw: ", count: &g.logBytes}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		g.mu.Unlock()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	g.cmd, g.done = cmd, done
	g.mu.Unlock()
	return testenv.WaitHTTP(ctx, "http://"+g.HTTPAddr+"/readyz", done, timeout)
}

// Kill ends the gateway with SIGKILL: a crash mid-transaction.
func (g *Gateway) Kill() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd == nil {
		return
	}
	_ = g.cmd.Process.Kill()
	<-g.done
	g.cmd = nil
}

type linePrefixer struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
	count  *atomic.Int64
}

func (l *linePrefixer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count.Add(int64(len(p)))
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(l.w, "%s%s\n", l.prefix, l.buf[:i])
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
