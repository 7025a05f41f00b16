// Package message defines the parsed-message JSON, version 1: the contract
// that webhooks, the store's parsed/ objects and `letterbox parse` share.
//
// The model follows the Internet Message Format (RFC 5322), MIME (RFC 2045,
// RFC 2046, RFC 2047, RFC 2231) and the SMTP envelope (RFC 5321). Field names
// are snake_case and stable: later versions add fields and never rename or
// remove one, so receivers must ignore fields they do not know.
//
// This package holds data only; the parser lives in internal/parser.
package message

import "time"

// Version is the schema version of Message.
const Version = 1

// Message is a received message, parsed.
type Message struct {
	// ID is the message id the gateway returned in its 250 reply.
	ID         string    `json:"id"`
	ReceivedAt time.Time `json:"received_at"`
	Envelope   Envelope  `json:"envelope"`

	MessageID  string   `json:"message_id"`
	InReplyTo  string   `json:"in_reply_to,omitempty"`
	References []string `json:"references,omitempty"`
	// Date is the Date header normalised to RFC 3339; empty when absent or
	// unparseable (see DateRaw and Warnings).
	Date    string `json:"date"`
	DateRaw string `json:"date_raw,omitempty"`
	// Subject is decoded from RFC 2047 encoded words.
	Subject string    `json:"subject"`
	From    *Address  `json:"from"`
	Sender  *Address  `json:"sender,omitempty"`
	To      []Address `json:"to"`
	Cc      []Address `json:"cc"`
	Bcc     []Address `json:"bcc,omitempty"`
	ReplyTo []Address `json:"reply_to"`

	// Headers lists every header field of the top-level entity, in order.
	Headers []Header `json:"headers"`

	// Text and HTML are the bodies a mail client would display, in UTF-8.
	Text         string `json:"text"`
	HTML         string `json:"html"`
	StrippedText string `json:"stripped_text,omitempty"`
	// Parts lists every text/plain and text/html part in order.
	Parts []Part `json:"parts,omitempty"`
	// Truncated is set when a text part was too large to keep whole (see
	// Part.Truncated): Text, HTML and StrippedText are then built from the
	// parts' prefixes.
	Truncated bool `json:"truncated,omitempty"`

	Attachments []Attachment `json:"attachments"`
	Auth        *Auth        `json:"auth,omitempty"`
	// Spam and Virus are the scanners' verdicts, taken during the SMTP
	// session (or mapped from SES receiving's own); absent when no scanner
	// looked at the message.
	Spam  *Spam  `json:"spam,omitempty"`
	Virus *Virus `json:"virus,omitempty"`

	// RawKey is the store key of the raw message.
	RawKey string `json:"raw_key"`
	// Size is the size of the raw message in bytes.
	Size int64 `json:"size"`
	// Warnings lists what could not be parsed; parsing never drops a message.
	Warnings []string `json:"warnings"`
}

// Envelope is the SMTP envelope (RFC 5321) of a received message, as the
// gateway saw it.
type Envelope struct {
	MailFrom string   `json:"mail_from"`
	RcptTo   []string `json:"rcpt_to"`
	ClientIP string   `json:"client_ip"`
	HELO     string   `json:"helo"`
	TLS      bool     `json:"tls"`
	// TLSVersion and TLSCipher name the negotiated TLS parameters, if any.
	TLSVersion string `json:"tls_version,omitempty"`
	TLSCipher  string `json:"tls_cipher,omitempty"`
	// SMTPUTF8 is set when the client declared SMTPUTF8 (RFC 6531).
	SMTPUTF8 bool `json:"smtputf8,omitempty"`
	// AuthUser is the authenticated user on the submission listener.
	AuthUser   string    `json:"auth_user,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
	// Source names the ingress: "gateway", or empty for a message written
	// by another ingress (SES receiving), which carries no envelope.
	Source string `json:"source,omitempty"`
	// Recipients repeats RcptTo with each recipient's sub-address tag; the
	// parser fills it.
	Recipients []Recipient `json:"recipients,omitempty"`
}

// Recipient is one envelope recipient (RFC 5321 RCPT TO).
type Recipient struct {
	Address string `json:"address"`
	// MailboxHash is the sub-address tag: "tag" for user+tag@domain.
	MailboxHash string `json:"mailbox_hash,omitempty"`
}

// Address is a mailbox (RFC 5322 §3.4).
type Address struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// MailboxHash is the sub-address tag: "tag" for user+tag@domain.
	MailboxHash string `json:"mailbox_hash,omitempty"`
	// Group names the RFC 5322 group the address was listed in, if any.
	Group string `json:"group,omitempty"`
	// AddressASCII is the address with its domain in IDNA A-labels
	// (RFC 5891), present only when the domain is written in Unicode.
	AddressASCII string `json:"address_ascii,omitempty"`
	// AddressUnicode is the address with its domain in Unicode U-labels,
	// present only when the domain is written with A-labels (xn--).
	AddressUnicode string `json:"address_unicode,omitempty"`
}

// Header is one header field, with RFC 2047 encoded words decoded.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// Raw is the undecoded value, present only where it differs from Value.
	Raw string `json:"raw,omitempty"`
}

// Part is one text part of the message.
type Part struct {
	ContentType string `json:"content_type"`
	// Charset is the charset the part declared; the content is UTF-8.
	Charset     string `json:"charset,omitempty"`
	Disposition string `json:"disposition,omitempty"`
	Content     string `json:"content"`
	// Path is the MIME part number, as IMAP numbers parts (RFC 3501 §6.4.5).
	Path string `json:"path,omitempty"`
	// Truncated is set when the part's decoded size is over the parser's
	// body limit (1 MiB unless configured): Content then holds only a
	// prefix, cut at a line end where there is one, and the whole part is
	// stored like an attachment under Key.
	Truncated bool `json:"truncated,omitempty"`
	// Size and SHA256 describe the whole decoded part (in its declared
	// charset, as stored under Key); set only on truncated parts.
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// Key is the store key of the whole decoded part, on truncated parts.
	Key string `json:"key,omitempty"`
	// URL is a time-limited link to the whole part, in webhook bodies
	// unless attachments: metadata; URLExpiresAt is when it stops working.
	URL          string     `json:"url,omitempty"`
	URLExpiresAt *time.Time `json:"url_expires_at,omitempty"`
}

// Attachment is a non-body part: an attachment or an inline resource.
type Attachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	Disposition string `json:"disposition"`
	ContentID   string `json:"content_id"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	// Key is the store key of the attachment's decoded bytes.
	Key string `json:"key,omitempty"`
	// Message summarises an attached message/rfc822.
	Message *Summary `json:"message,omitempty"`
	// Path is the MIME part number, as IMAP numbers parts (RFC 3501 §6.4.5).
	Path string `json:"path,omitempty"`
	// URL is a time-limited link to the decoded bytes, in webhook bodies
	// with attachments: links (the default).
	URL string `json:"url,omitempty"`
	// URLExpiresAt is when URL stops working.
	URLExpiresAt *time.Time `json:"url_expires_at,omitempty"`
	// ContentBase64 holds the decoded bytes, in webhook bodies with
	// attachments: inline (up to the action's inline_max_bytes).
	ContentBase64 string `json:"content_base64,omitempty"`
}

// Summary describes an attached message (message/rfc822).
type Summary struct {
	Subject     string       `json:"subject"`
	From        *Address     `json:"from"`
	Date        string       `json:"date"`
	Attachments []Attachment `json:"attachments,omitempty"`
	MessageID   string       `json:"message_id,omitempty"`
	To          []Address    `json:"to,omitempty"`
}

// Auth holds the sender-authentication verdicts.
type Auth struct {
	SPF *SPFResult `json:"spf,omitempty"`
	// SPFHelo is the RFC 7208 §2.3 check of the HELO identity; absent
	// without an envelope or a HELO name.
	SPFHelo *SPFResult   `json:"spf_helo,omitempty"`
	DKIM    []DKIMResult `json:"dkim"`
	DMARC   *DMARCResult `json:"dmarc,omitempty"`
	ARC     *ARCResult   `json:"arc,omitempty"`
	// AuthenticationResults is the same verdict as an RFC 8601 header value.
	AuthenticationResults string `json:"authentication_results"`
}

// SPFResult is an RFC 7208 result.
type SPFResult struct {
	Result string `json:"result"`
	Domain string `json:"domain"`
	// Reason explains a result other than pass or none.
	Reason string `json:"reason,omitempty"`
	// Explanation is the domain's own text for a fail (the record's exp=
	// modifier, RFC 7208 §6.2), written by the sender's domain.
	Explanation string `json:"explanation,omitempty"`
}

// DKIMResult is the RFC 6376 result of one signature.
type DKIMResult struct {
	Result   string `json:"result"`
	Domain   string `json:"domain"`
	Selector string `json:"selector"`
	// Reason explains a result other than pass.
	Reason string `json:"reason,omitempty"`
}

// DMARCResult is an RFC 7489 result.
type DMARCResult struct {
	Result string `json:"result"`
	Policy string `json:"policy"`
	Domain string `json:"domain"`
	// SPFAligned and DKIMAligned say which passing identifier was aligned
	// with the From domain (RFC 7489 §3.1).
	SPFAligned  bool `json:"spf_aligned"`
	DKIMAligned bool `json:"dkim_aligned"`
	// Reason explains a result other than pass.
	Reason string `json:"reason,omitempty"`
}

// ARCResult is an RFC 8617 chain validation result.
type ARCResult struct {
	Result string `json:"result"`
	// Instances is the number of ARC sets in the chain.
	Instances int `json:"instances,omitempty"`
	// Reason explains a result other than pass or none.
	Reason string `json:"reason,omitempty"`
}

// Spam is a spam scanner's verdict (rspamd's /checkv2 answer, or SES
// receiving's spamVerdict mapped onto it).
type Spam struct {
	Score         float64 `json:"score"`
	RequiredScore float64 `json:"required_score"`
	// Action is the scanner's recommendation: "no action", "greylist",
	// "add header", "rewrite subject", "soft reject" or "reject" (rspamd's
	// names); "error" when the scanner failed open.
	Action  string       `json:"action"`
	Symbols []SpamSymbol `json:"symbols,omitempty"`
	// Scanner names what produced the verdict: "rspamd" or "ses".
	Scanner string `json:"scanner,omitempty"`
	// Error says why the scan failed, when Action is "error".
	Error string `json:"error,omitempty"`
}

// SpamSymbol is one rule that contributed to a spam score.
type SpamSymbol struct {
	Name  string  `json:"name"`
	Score float64 `json:"score"`
}

// Virus is a virus scanner's verdict (clamd's INSTREAM answer, or SES
// receiving's virusVerdict mapped onto it).
type Virus struct {
	// Result is "clean", "infected" or "error".
	Result     string   `json:"result"`
	Signatures []string `json:"signatures,omitempty"`
	// Scanner names what produced the verdict: "clamd" or "ses".
	Scanner string `json:"scanner,omitempty"`
	// Error says why the scan failed, when Result is "error".
	Error string `json:"error,omitempty"`
}
