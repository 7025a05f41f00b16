package parser

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/mailauth"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/message"
)

// Default limits.
const (
	DefaultMaxDepth       = 20
	DefaultMaxParts       = 1000
	DefaultMaxHeaderBytes = 1 << 20
	DefaultMaxBodyBytes   = 1 << 20
	// bodyBudgetParts: the text parts of a message keep at most this many
	// times MaxBodyBytes in the JSON together, so that many parts just
	// under the limit cannot add up to an unbounded message.
	bodyBudgetParts = 4
	// maxWarnings bounds Message.Warnings; the last entry counts the rest.
	maxWarnings = 100
)

// ParseMaxBodyBytes reads a MaxBodyBytes setting (LETTERBOX_MAX_BODY_BYTES,
// --max-body-bytes): a whole number of bytes, at least 1024; empty means
// the default.
func ParseMaxBodyBytes(s string) (int, error) {
	if s == "" {
		return DefaultMaxBodyBytes, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1024 {
		return 0, fmt.Errorf("%q is not a body limit in bytes (at least 1024, e.g. 1048576)", s)
	}
	return n, nil
}

// ErrNoID is returned when Options.Store is set without Options.ID, which
// attachment keys are made of.
var ErrNoID = errors.New("parser: Options.Store is set but Options.ID is empty")

// Options configures Parse.
type Options struct {
	// ID is the message id (ULID); it goes to Message.ID and attachment keys.
	ID string
	// RawKey is the store key of the raw message; it goes to Message.RawKey.
	RawKey string
	// Envelope may be nil (e.g. SES-written objects): then the envelope
	// fields stay empty.
	Envelope *message.Envelope
	// Store, if non-nil, receives attachment bytes under
	// attachments/<ID>/<n>/<safe filename>, and Attachment.Key is set.
	Store store.Store
	// Auth checks SPF, DKIM, DMARC and ARC; nil means no checks (Message.Auth
	// nil).
	Auth *mailauth.Checker
	// Now gives the time for ReceivedAt when the envelope has none.
	Now func() time.Time

	// MaxDepth bounds multipart and message/rfc822 nesting; deeper entities
	// are kept as opaque attachments. Zero means DefaultMaxDepth.
	MaxDepth int
	// MaxParts bounds the number of MIME entities parsed; the rest are
	// skipped (they stay in the raw message). Zero means DefaultMaxParts.
	MaxParts int
	// MaxHeaderBytes bounds each header block; further fields are skipped.
	// Zero means DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxBodyBytes bounds the decoded bytes of a text/plain or text/html
	// part kept in the JSON. A larger part is stored whole like an
	// attachment (attachments/<ID>/part-<path>/body.txt or .html, when
	// Store is set) and its message.Part keeps a prefix, with Truncated,
	// Size, SHA256 and Key set. All text parts together keep at most four
	// times MaxBodyBytes; later parts keep a shorter prefix. Zero means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int
	// Logger receives internal errors; nil means slog.Default().
	Logger *slog.Logger
}

// Parse reads one raw RFC 5322 message and returns its parsed form. It is
// lenient: it never fails because the message is malformed (problems go to
// Message.Warnings); it returns an error only when it cannot read its input
// or write to the store (classified with package fault).
func Parse(ctx context.Context, r io.Reader, opts Options) (*message.Message, error) {
	if opts.Store != nil && opts.ID == "" {
		return nil, fault.Permanent(ErrNoID)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	msg := &message.Message{
		ID:          opts.ID,
		RawKey:      opts.RawKey,
		To:          []message.Address{},
		Cc:          []message.Address{},
		ReplyTo:     []message.Address{},
		Headers:     []message.Header{},
		Attachments: []message.Attachment{},
		Warnings:    []string{},
	}
	if env := opts.Envelope; env != nil {
		msg.Envelope = *env
		msg.Envelope.RcptTo = append([]string{}, env.RcptTo...)
		msg.Envelope.Recipients = Recipients(env.RcptTo)
		msg.ReceivedAt = env.ReceivedAt
	}
	if msg.Envelope.RcptTo == nil {
		msg.Envelope.RcptTo = []string{}
	}
	if msg.ReceivedAt.IsZero() {
		msg.ReceivedAt = now().UTC()
	}

	in := &input{r: r}
	var src io.Reader = in
	var (
		pw       *io.PipeWriter
		authDone chan *message.Auth
	)
	p := newParser(ctx, opts, msg)
	if opts.Auth != nil {
		// Authentication reads the same bytes in the same pass, through a
		// pipe: nothing is spooled and the message is never held whole.
		// DMARC takes its From identity from this parse (p.from), never
		// from a reading of its own: Check asks for it after reading to
		// EOF, which comes after p.run has returned and closed the pipe.
		pr, w := io.Pipe()
		pw = w
		authDone = make(chan *message.Auth, 1)
		src = io.TeeReader(in, &softWriter{w: pw})
		go func() {
			a, _ := opts.Auth.Check(ctx, opts.Envelope, pr, func() mailauth.From { return p.from })
			io.Copy(io.Discard, pr)
			authDone <- a
		}()
	}

	br := topPool.Get().(*bufio.Reader)
	br.Reset(src)
	p.run(br)
	io.Copy(io.Discard, br)
	br.Reset(nil)
	topPool.Put(br)
	if pw != nil {
		if p.err != nil {
			pw.CloseWithError(p.err)
		} else {
			pw.Close()
		}
		msg.Auth = <-authDone
	}
	if in.err != nil {
		return nil, fault.Temporary(fmt.Errorf("parser: read message: %w", in.err))
	}
	if p.err != nil {
		return nil, p.err
	}
	msg.Size = in.n
	p.finish()
	return msg, nil
}

// input counts what is read and turns a read error into EOF for the
// parser, keeping it for Parse to return.
type input struct {
	r   io.Reader
	n   int64
	err error
}

func (in *input) Read(p []byte) (int, error) {
	if in.err != nil {
		return 0, io.EOF
	}
	n, err := in.r.Read(p)
	in.n += int64(n)
	if err != nil && err != io.EOF {
		in.err = err
		err = io.EOF
	}
	return n, err
}

type parser struct {
	ctx  context.Context
	opts Options
	msg  *message.Message
	log  *slog.Logger

	maxDepth, maxParts, maxHeader int
	maxBody                       int
	bodyBudget                    int // text bytes the JSON may still keep

	store   store.Store
	atts    *[]message.Attachment // where attachments go: the message or a summary
	summary bool                  // inside an attached message: no text, no store

	nparts      int
	skipped     int
	warnings    []string
	seen        map[string]bool
	moreWarning int
	err         error

	// from is the top-level From identity that topHeader read, for DMARC.
	from mailauth.From
}

func newParser(ctx context.Context, opts Options, msg *message.Message) *parser {
	p := &parser{ctx: ctx, opts: opts, msg: msg, log: opts.Logger, store: opts.Store, atts: &msg.Attachments}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.maxDepth = orDefault(opts.MaxDepth, DefaultMaxDepth)
	p.maxParts = orDefault(opts.MaxParts, DefaultMaxParts)
	p.maxHeader = orDefault(opts.MaxHeaderBytes, DefaultMaxHeaderBytes)
	p.maxBody = orDefault(opts.MaxBodyBytes, DefaultMaxBodyBytes)
	p.bodyBudget = bodyBudgetParts * p.maxBody
	return p
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// warn records a problem; where names the part ("part 1.2") or "header".
func (p *parser) warn(where, msg string) {
	w := msg
	if where != "" {
		w = where + ": " + msg
	}
	if p.seen[w] {
		return
	}
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	p.seen[w] = true
	if len(p.warnings) >= maxWarnings-1 {
		p.moreWarning++
		return
	}
	p.warnings = append(p.warnings, w)
}

func (p *parser) warnFunc(where string) func(string) {
	return func(m string) { p.warn(where, m) }
}

func partName(path string) string {
	if path == "" {
		return "message"
	}
	return "part " + path
}

// run parses the message, turning a panic (a bug) into a warning so that a
// message is never lost to it.
func (p *parser) run(br *bufio.Reader) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("parser: internal error", "panic", r, "id", p.opts.ID, "stack", string(debug.Stack()))
			p.warn("", fmt.Sprintf("internal error, parse incomplete: %v", r))
		}
	}()
	h, leftover := readHeader(br, p.maxHeader, p.warnFunc("header"))
	top := p.newEntity("", h, "text/plain")
	p.topHeader(h, top.params["charset"])
	c := p.walk(top, bodyReader(leftover, br), 0, false)
	p.setBody(c)
}

func bodyReader(leftover []byte, br *bufio.Reader) io.Reader {
	if leftover == nil {
		return br
	}
	return io.MultiReader(bytes.NewReader(leftover), br)
}

// entity is one MIME entity: a message or a body part.
type entity struct {
	path    string
	h       header
	ctype   string
	params  map[string]string
	disp    string
	dparams map[string]string
	cte     string
}

func (p *parser) newEntity(path string, h header, defType string) *entity {
	e := &entity{path: path, h: h, ctype: defType}
	where := partName(path)
	if v, ok := h.get("Content-Type"); ok {
		s, _ := headerText(v, "")
		ct, params, w := parseMediaHeader(s)
		if w != "" {
			p.warn(where, "Content-Type: "+w)
		}
		if slash := strings.IndexByte(ct, '/'); slash <= 0 || slash == len(ct)-1 || strings.ContainsAny(ct, " \t\"") {
			p.warn(where, "invalid Content-Type "+quote(s)+", read as "+defType)
		} else {
			e.ctype = ct
			e.params = params
		}
	}
	if v, ok := h.get("Content-Disposition"); ok {
		s, _ := headerText(v, "")
		d, params, w := parseMediaHeader(s)
		if w != "" {
			p.warn(where, "Content-Disposition: "+w)
		}
		e.disp, e.dparams = d, params
	}
	if v, ok := h.get("Content-Transfer-Encoding"); ok {
		e.cte = strings.ToLower(strings.TrimSpace(stripComment(string(v))))
	}
	return e
}

func (e *entity) filename() string {
	if f := e.dparams["filename"]; f != "" {
		return f
	}
	return e.params["name"]
}

func (e *entity) contentID() string {
	v, _ := e.h.get("Content-ID")
	s, _ := headerText(v, "")
	return strings.TrimSpace(strings.Trim(strings.TrimSpace(s), "<>"))
}

// content is what an entity contributes to the displayed body.
type content struct {
	text  string
	html  string
	plain bool // text comes from text/plain
	rich  bool // html is present
}

func (p *parser) walk(e *entity, body io.Reader, depth int, resource bool) content {
	if p.err != nil {
		return content{}
	}
	if err := p.ctx.Err(); err != nil {
		p.err = fault.Temporary(fmt.Errorf("parser: %w", err))
		return content{}
	}
	p.nparts++
	if p.nparts > p.maxParts {
		p.skipped++
		return content{}
	}
	major, _, _ := strings.Cut(e.ctype, "/")
	switch {
	case major == "multipart":
		if depth >= p.maxDepth {
			p.warn(partName(e.path), fmt.Sprintf("nested deeper than %d; kept as an attachment", p.maxDepth))
			p.attachment(e, body, resource)
			return content{}
		}
		if e.params["boundary"] == "" {
			p.warn(partName(e.path), e.ctype+" without boundary; read as text/plain")
			e.ctype = "text/plain"
			return p.textPart(e, body)
		}
		return p.multipart(e, body, depth)
	case e.ctype == "message/rfc822" || e.ctype == "message/global":
		if depth >= p.maxDepth {
			p.warn(partName(e.path), fmt.Sprintf("nested deeper than %d; kept as an attachment", p.maxDepth))
			p.attachment(e, body, resource)
			return content{}
		}
		p.attachedMessage(e, body, depth, resource)
		return content{}
	case (e.ctype == "text/plain" || e.ctype == "text/html") && e.disp != "attachment" && !resource:
		return p.textPart(e, body)
	default:
		p.attachment(e, body, resource)
		return content{}
	}
}

var topPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

func getReader(r io.Reader) *bufio.Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readerPool.Put(br)
}

func childPath(parent string, i int) string {
	if parent == "" {
		return itoa(i)
	}
	return parent + "." + itoa(i)
}

func (p *parser) multipart(e *entity, body io.Reader, depth int) content {
	br, ok := body.(*bufio.Reader)
	if !ok {
		br = getReader(body)
		defer putReader(br)
	}
	sub := strings.TrimPrefix(e.ctype, "multipart/")
	mr := newMultipartReader(br, e.params["boundary"])
	start := strings.Trim(strings.TrimSpace(e.params["start"]), "<>")
	var kids []content
	n := 0
	for mr.Next() {
		n++
		if p.err != nil {
			break
		}
		path := childPath(e.path, n)
		cbr := getReader(mr)
		h, leftover := readHeader(cbr, p.maxHeader, p.warnFunc(partName(path)))
		def := "text/plain"
		if sub == "digest" {
			def = "message/rfc822"
		}
		child := p.newEntity(path, h, def)
		resource := false
		if sub == "related" {
			if start != "" {
				resource = child.contentID() != start
			} else {
				resource = n > 1
			}
		}
		kids = append(kids, p.walk(child, bodyReader(leftover, cbr), depth+1, resource))
		putReader(cbr)
	}
	if p.err != nil {
		return content{}
	}
	where := partName(e.path)
	if n == 0 {
		if mr.closed {
			p.warn(where, e.ctype+" has no parts")
			return content{}
		}
		p.warn(where, e.ctype+": boundary "+quote(e.params["boundary"])+" not found; body read as text/plain")
		if mr.truncated {
			p.warn(where, fmt.Sprintf("body without parts cut at %d bytes", maxPreamble))
		}
		t := &entity{path: e.path, h: e.h, ctype: "text/plain", params: map[string]string{"charset": e.params["charset"]}, cte: e.cte}
		return p.textPart(t, bytes.NewReader(mr.preamble[:min(len(mr.preamble), maxPreamble)]))
	}
	if mr.missingClose() && p.nparts <= p.maxParts {
		p.warn(where, e.ctype+": closing boundary missing")
	}
	return combine(sub, kids)
}

// combine merges the bodies of a multipart's children as a mail client
// shows them: multipart/alternative shows its last plain and last rich
// alternative; other multiparts show every child in order, so text and HTML
// each get every child's content (converted when a child has only the
// other form).
func combine(sub string, kids []content) content {
	var out content
	if sub == "alternative" {
		for _, k := range kids {
			if k.plain {
				out.text, out.plain = k.text, true
			}
			if k.rich {
				out.html, out.rich = k.html, true
			}
		}
		return out
	}
	for _, k := range kids {
		out.plain = out.plain || k.plain
		out.rich = out.rich || k.rich
	}
	var tb, hb strings.Builder
	for _, k := range kids {
		if !k.plain && !k.rich {
			continue
		}
		if out.plain {
			t := k.text
			if !k.plain {
				t = htmlToText(k.html)
			}
			if tb.Len() > 0 && !strings.HasSuffix(tb.String(), "\n") {
				tb.WriteByte('\n')
			}
			tb.WriteString(t)
		}
		if out.rich {
			h := k.html
			if !k.rich {
				h = "<pre>" + html.EscapeString(k.text) + "</pre>"
			}
			if hb.Len() > 0 {
				hb.WriteByte('\n')
			}
			hb.WriteString(h)
		}
	}
	out.text, out.html = tb.String(), hb.String()
	return out
}

func (p *parser) setBody(c content) {
	if c.rich {
		p.msg.HTML = c.html
	}
	switch {
	case c.plain:
		p.msg.Text = c.text
	case c.rich:
		p.msg.Text = htmlToText(c.html)
	}
}

// decoder undoes the Content-Transfer-Encoding; done reports what had to be
// skipped.
func (p *parser) decoder(e *entity, body io.Reader) (r io.Reader, done func()) {
	where := partName(e.path)
	switch e.cte {
	case "", "7bit", "8bit", "binary":
		return body, func() {}
	case "base64":
		d := newBase64Reader(body)
		return d, func() {
			if d.invalid > 0 {
				p.warn(where, fmt.Sprintf("base64: %d invalid characters skipped", d.invalid))
			}
			d.release()
		}
	case "quoted-printable":
		d := newQPReader(body)
		return d, func() {
			if d.invalid > 0 {
				p.warn(where, fmt.Sprintf("quoted-printable: %d invalid escapes kept literally", d.invalid))
			}
		}
	case "x-uuencode", "uuencode", "x-uue", "uue":
		d := newUUReader(body)
		return d, func() {
			if d.invalid > 0 {
				p.warn(where, fmt.Sprintf("uuencode: %d invalid characters", d.invalid))
			}
		}
	default:
		p.warn(where, "unknown Content-Transfer-Encoding "+quote(e.cte)+"; body kept undecoded")
		return body, func() {}
	}
}

var metaCharset = regexp.MustCompile(`(?i)<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_:.\-]+)`)

func (p *parser) textPart(e *entity, body io.Reader) content {
	r, done := p.decoder(e, body)
	if p.summary {
		io.Copy(io.Discard, r)
		done()
		return content{}
	}
	path := e.path
	if path == "" {
		path = "1"
	}
	where := partName(path)
	// Read no more than the JSON may keep, and one byte to know whether
	// there is more: a larger part streams on to the store.
	keep := min(p.maxBody, p.bodyBudget)
	data, _ := io.ReadAll(io.LimitReader(r, int64(keep)+1))
	part := message.Part{ContentType: e.ctype, Charset: e.params["charset"], Disposition: e.disp, Path: path}
	whole := len(data) <= keep
	if !whole {
		data = p.storeBody(e, &part, data, r)
	}
	done()
	if p.err != nil {
		return content{}
	}
	if whole {
		p.bodyBudget -= len(data)
	} else {
		p.bodyBudget -= keep
	}
	label := e.params["charset"]
	if label == "" && e.ctype == "text/html" {
		head := data[:min(len(data), 4096)]
		if m := metaCharset.FindSubmatch(head); m != nil {
			label = string(m[1])
		}
	}
	s, w := decodeCharset(label, data)
	if w != "" {
		p.warn(where, w)
	}
	s = p.cleanText(where, s)
	if whole && e.filename() != "" {
		p.storeBytes(e, data, false)
		if p.err != nil {
			return content{}
		}
	}
	part.Content = s
	p.msg.Parts = append(p.msg.Parts, part)
	if e.ctype == "text/html" {
		return content{html: s, rich: true}
	}
	if strings.EqualFold(e.params["format"], "flowed") {
		s = unflow(s, strings.EqualFold(e.params["delsp"], "yes"))
	}
	return content{text: s, plain: true}
}

// storeBody handles a text part larger than the JSON keeps: head is its
// first bytes (one more than kept) and r the rest. The whole decoded part
// streams, hashed, to the store under its own key; the returned prefix of
// head, cut after the last line end in its second half (else at a UTF-8
// character boundary), is what the JSON keeps. A text part with a file
// name is listed as an attachment with the same key.
func (p *parser) storeBody(e *entity, part *message.Part, head []byte, r io.Reader) []byte {
	keep := len(head) - 1
	prefix := head[:keep]
	if i := bytes.LastIndexByte(prefix, '\n'); i >= keep/2 {
		prefix = prefix[:i+1]
	} else {
		for n := len(prefix); n > 0 && len(prefix)-n < utf8.UTFMax; n-- {
			if utf8.RuneStart(prefix[n-1]) {
				if !utf8.FullRune(prefix[n-1:]) {
					prefix = prefix[:n-1]
				}
				break
			}
		}
	}
	hw := &hashWriter{h: sha256.New()}
	src := io.TeeReader(io.MultiReader(bytes.NewReader(head), r), hw)
	ctype := e.ctype
	if cs := e.params["charset"]; cs != "" {
		ctype += "; charset=" + cs
	}
	if p.store != nil {
		key := store.AttachmentsPrefix + p.opts.ID + "/part-" + part.Path + "/body" + extension(e.ctype)
		if _, err := p.store.Put(p.ctx, key, src, map[string]string{"content-type": asciiMeta(ctype)}); err != nil {
			p.err = fmt.Errorf("parser: store %s: %w", key, err)
			return nil
		}
		part.Key = key
	}
	io.Copy(io.Discard, src)
	part.Truncated, part.Size, part.SHA256 = true, hw.n, hex.EncodeToString(hw.h.Sum(nil))
	p.msg.Truncated = true
	p.warn(partName(part.Path), fmt.Sprintf("%s part of %d bytes: the JSON keeps its first %d", e.ctype, hw.n, len(prefix)))
	if e.filename() != "" {
		a := p.newAttachment(e, false)
		a.Key, a.Size, a.SHA256 = part.Key, part.Size, part.SHA256
		*p.atts = append(*p.atts, a)
	}
	return prefix
}

// cleanText normalises line endings to "\n" and removes NUL bytes.
func (p *parser) cleanText(where, s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		n := strings.Count(s, "\x00")
		s = strings.ReplaceAll(s, "\x00", "")
		p.warn(where, fmt.Sprintf("%d NUL bytes removed", n))
	}
	if strings.IndexByte(s, '\r') >= 0 {
		s = strings.ReplaceAll(s, "\r\n", "\n")
		s = strings.ReplaceAll(s, "\r", "\n")
	}
	return s
}

func (p *parser) newAttachment(e *entity, resource bool) message.Attachment {
	disp := e.disp
	if disp == "" {
		disp = "attachment"
		if resource {
			disp = "inline"
		}
	}
	path := e.path
	if path == "" {
		path = "1"
	}
	return message.Attachment{
		Filename:    e.filename(),
		ContentType: e.ctype,
		Disposition: disp,
		ContentID:   e.contentID(),
		Path:        path,
	}
}

func (p *parser) attachmentKey(a *message.Attachment) string {
	return store.AttachmentsPrefix + p.opts.ID + "/" + itoa(len(*p.atts)) + "/" + safeName(a.Filename, a.ContentType)
}

// attachment hashes an entity's decoded bytes and streams them to the store.
func (p *parser) attachment(e *entity, body io.Reader, resource bool) {
	r, done := p.decoder(e, body)
	a := p.newAttachment(e, resource)
	hw := &hashWriter{h: sha256.New()}
	tee := io.TeeReader(r, hw)
	if p.store != nil && !p.summary {
		key := p.attachmentKey(&a)
		if _, err := p.store.Put(p.ctx, key, tee, map[string]string{"content-type": asciiMeta(a.ContentType)}); err != nil {
			p.err = fmt.Errorf("parser: store %s: %w", key, err)
			return
		}
		a.Key = key
	}
	io.Copy(io.Discard, tee)
	done()
	a.Size, a.SHA256 = hw.n, hex.EncodeToString(hw.h.Sum(nil))
	*p.atts = append(*p.atts, a)
}

// storeBytes records a text part that has a file name as an attachment too.
func (p *parser) storeBytes(e *entity, data []byte, resource bool) {
	if p.summary {
		return
	}
	a := p.newAttachment(e, resource)
	sum := sha256.Sum256(data)
	a.Size, a.SHA256 = int64(len(data)), hex.EncodeToString(sum[:])
	if p.store != nil {
		key := p.attachmentKey(&a)
		if _, err := p.store.Put(p.ctx, key, bytes.NewReader(data), map[string]string{"content-type": asciiMeta(a.ContentType)}); err != nil {
			p.err = fmt.Errorf("parser: store %s: %w", key, err)
			return
		}
		a.Key = key
	}
	*p.atts = append(*p.atts, a)
}

// attachedMessage stores an attached message as one attachment and, in the
// same pass, summarises it (subject, from, date, its own attachments).
func (p *parser) attachedMessage(e *entity, body io.Reader, depth int, resource bool) {
	r, done := p.decoder(e, body)
	a := p.newAttachment(e, resource)
	hw := &hashWriter{h: sha256.New()}
	var sink io.Writer = hw
	var (
		pw     *io.PipeWriter
		stored chan error
		key    string
	)
	if p.store != nil && !p.summary {
		key = p.attachmentKey(&a)
		pr, w := io.Pipe()
		pw = w
		stored = make(chan error, 1)
		go func() {
			_, err := p.store.Put(p.ctx, key, pr, map[string]string{"content-type": asciiMeta(a.ContentType)})
			pr.CloseWithError(errors.New("store stopped reading"))
			stored <- err
		}()
		sink = io.MultiWriter(hw, &softWriter{w: pw})
	}
	tee := io.TeeReader(r, sink)
	func() {
		defer func() {
			// Whatever happens, let the store see the end and wait for it.
			io.Copy(io.Discard, tee)
			if pw != nil {
				pw.Close()
				if err := <-stored; err != nil && p.err == nil {
					p.err = fmt.Errorf("parser: store %s: %w", key, err)
				}
			}
		}()
		a.Message = p.summarize(tee, e.path, depth+1)
	}()
	done()
	if p.err != nil {
		return
	}
	if pw != nil {
		a.Key = key
	}
	a.Size, a.SHA256 = hw.n, hex.EncodeToString(hw.h.Sum(nil))
	*p.atts = append(*p.atts, a)
}

// summarize parses an attached message for its summary.
func (p *parser) summarize(r io.Reader, path string, depth int) *message.Summary {
	br := getReader(r)
	defer putReader(br)
	h, leftover := readHeader(br, p.maxHeader, p.warnFunc(partName(path)))
	e := p.newEntity(path, h, "text/plain")
	s := &message.Summary{}
	charset := e.params["charset"]
	if v, ok := h.get("Subject"); ok {
		s.Subject = p.decodedValue(partName(path), v, charset)
	}
	if v, ok := h.get("Date"); ok {
		t, _ := headerText(v, charset)
		if d, ok := parseDate(t); ok {
			s.Date = d.Format(time.RFC3339)
		}
	}
	if v, ok := h.get("Message-ID"); ok {
		t, _ := headerText(v, charset)
		if ids := msgIDs(t); len(ids) > 0 {
			s.MessageID = ids[0]
		}
	}
	if from := p.addresses(partName(path), h, "From", charset); len(from) > 0 {
		s.From = &from[0]
	}
	s.To = p.addresses(partName(path), h, "To", charset)
	saveAtts, saveSummary := p.atts, p.summary
	p.atts, p.summary = &s.Attachments, true
	defer func() { p.atts, p.summary = saveAtts, saveSummary }()
	if strings.HasPrefix(e.ctype, "multipart/") || e.ctype == "message/rfc822" || e.ctype == "message/global" {
		p.walk(e, bodyReader(leftover, br), depth, false)
	} else {
		e.path = path + ".1"
		p.walk(e, bodyReader(leftover, br), depth, false)
	}
	return s
}

// decodedValue turns a raw header value into text: 8-bit bytes decoded,
// NULs removed, RFC 2047 words decoded.
func (p *parser) decodedValue(where string, v []byte, charset string) string {
	t, w := headerText(v, charset)
	if w != "" {
		p.warn(where, w)
	}
	if strings.IndexByte(t, 0) >= 0 {
		t = strings.ReplaceAll(t, "\x00", "")
		p.warn(where, "NUL bytes removed from header")
	}
	d, w := decodeWords(t)
	if w != "" {
		p.warn(where, w)
	}
	return strings.ReplaceAll(d, "\x00", "")
}

// addresses parses every field named name as one address list.
func (p *parser) addresses(where string, h header, name, charset string) []message.Address {
	vals := h.all(name)
	if len(vals) == 0 {
		return []message.Address{}
	}
	out := []message.Address{}
	for _, v := range vals {
		t, w := headerText(v, charset)
		if w != "" {
			p.warn(where, name+": "+w)
		}
		t = strings.ReplaceAll(t, "\x00", "")
		as, warns, _ := parseAddressList(t)
		for _, w := range warns {
			p.warn(where, name+": "+w)
		}
		out = append(out, as...)
	}
	return out
}

var msgIDRe = regexp.MustCompile(`<([^<>\s]*)>`)

// msgIDs extracts message identifiers (RFC 5322 §3.6.4) without their angle
// brackets; values without brackets are split on white space.
func msgIDs(s string) []string {
	s = stripComment(s)
	var out []string
	for _, m := range msgIDRe.FindAllStringSubmatch(s, -1) {
		if m[1] != "" {
			out = append(out, m[1])
		}
	}
	if out == nil {
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' }) {
			out = append(out, strings.Trim(f, "<>"))
		}
	}
	return out
}

// topHeader fills the message's header fields.
func (p *parser) topHeader(h header, charset string) {
	m := p.msg
	for _, f := range h.fields {
		text, w := headerText(f.value, charset)
		if w != "" {
			p.warn("header", f.name+": "+w)
		}
		if strings.IndexByte(text, 0) >= 0 {
			text = strings.ReplaceAll(text, "\x00", "")
			p.warn("header", f.name+": NUL bytes removed")
		}
		dec, w2 := decodeWords(text)
		if w2 != "" {
			p.warn("header", f.name+": "+w2)
		}
		if strings.IndexByte(dec, 0) >= 0 {
			dec = strings.ReplaceAll(dec, "\x00", "")
			p.warn("header", f.name+": NUL bytes removed")
		}
		hd := message.Header{Name: f.name, Value: dec}
		if dec != text || w != "" {
			hd.Raw = strings.ToValidUTF8(string(f.value), "\uFFFD")
		}
		m.Headers = append(m.Headers, hd)
	}
	for i := range h.fields {
		if strings.EqualFold(h.fields[i].name, "Subject") {
			m.Subject = m.Headers[i].Value
			break
		}
	}
	if v, ok := h.get("Date"); ok {
		t, _ := headerText(v, charset)
		m.DateRaw = t
		if d, ok := parseDate(t); ok {
			m.Date = d.Format(time.RFC3339)
		} else {
			p.warn("header", "unparseable Date "+quote(t))
		}
	}
	if v, ok := h.get("Message-ID"); ok {
		t, _ := headerText(v, charset)
		if ids := msgIDs(t); len(ids) > 0 {
			m.MessageID = ids[0]
		}
	}
	if v, ok := h.get("In-Reply-To"); ok {
		t, _ := headerText(v, charset)
		if ids := msgIDs(t); len(ids) > 0 {
			m.InReplyTo = ids[0]
		}
	}
	for _, v := range h.all("References") {
		t, _ := headerText(v, charset)
		m.References = append(m.References, msgIDs(t)...)
	}
	m.From, p.from = p.fromField(h, charset)
	if s := p.addresses("header", h, "Sender", charset); len(s) > 0 {
		m.Sender = &s[0]
	}
	m.To = p.addresses("header", h, "To", charset)
	m.Cc = p.addresses("header", h, "Cc", charset)
	if bcc := p.addresses("header", h, "Bcc", charset); len(bcc) > 0 {
		m.Bcc = bcc
	}
	m.ReplyTo = p.addresses("header", h, "Reply-To", charset)
}

// finish sets the derived fields and the warnings.
func (p *parser) finish() {
	m := p.msg
	m.StrippedText = stripReply(m.Text)
	if p.skipped > 0 {
		p.warn("", fmt.Sprintf("more than %d MIME parts: %d parts not parsed", p.maxParts, p.skipped))
	}
	if p.moreWarning > 0 {
		p.warnings = append(p.warnings, fmt.Sprintf("%d more warnings not listed", p.moreWarning))
	}
	m.Warnings = append(m.Warnings, p.warnings...)
}

// unflow joins the lines of format=flowed text (RFC 3676 §4.2): a line
// ending in a space continues on the next line of the same quote depth. With
// delsp=yes that space is removed. Space-stuffing is undone.
func unflow(s string, delsp bool) string {
	var b strings.Builder
	b.Grow(len(s))
	lines := strings.Split(s, "\n")
	open := false // the previous line was flowed
	prevDepth := 0
	for i, line := range lines {
		depth := 0
		for depth < len(line) && line[depth] == '>' {
			depth++
		}
		// Undo space-stuffing (§4.4), or drop the space after quote marks.
		text := strings.TrimPrefix(line[depth:], " ")
		if open && depth != prevDepth {
			b.WriteByte('\n')
			open = false
		}
		if !open {
			if depth > 0 {
				b.WriteString(strings.Repeat(">", depth))
				b.WriteByte(' ')
			}
		}
		flowed := strings.HasSuffix(text, " ") && text != "-- "
		if flowed && delsp {
			text = text[:len(text)-1]
		}
		b.WriteString(text)
		if flowed && i < len(lines)-1 {
			open = true
		} else {
			open = false
			if i < len(lines)-1 {
				b.WriteByte('\n')
			}
		}
		prevDepth = depth
	}
	return b.String()
}
