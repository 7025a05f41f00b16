// Package smtpgw is letterbox's inbound SMTP edge: a go-smtp Backend and
// Session that accept mail for the configured domains and write each
// message durably to a store.Store before answering 250.
//
// It implements, on top of github.com/emersion/go-smtp:
//
//   - SMTP (RFC 5321): replies, timeouts (§4.5.3.2), the Received trace
//     header (§4.4), limits and error-count disconnects.
//   - Enhanced status codes (RFC 3463, RFC 2034) on every reply.
//   - STARTTLS (RFC 3207) with certificate reload, TLS 1.2 or later, and
//     defence against command injection before the handshake.
//   - AUTH PLAIN and LOGIN (RFC 4954) on an optional submission listener,
//     only after TLS, with rate-limited failures.
//   - SMTPUTF8 (RFC 6531), 8BITMIME (RFC 6152), PIPELINING (RFC 2920),
//     CHUNKING/BDAT (RFC 3030) and SIZE (RFC 1870).
//   - SPF (RFC 7208) at MAIL FROM, evaluated by internal/mailauth, with a
//     policy of off, tag (Received-SPF header) or reject (550 5.7.23,
//     RFC 7372; 451 4.7.24 on a DNS error), and DNS blocklists (RFC 5782).
//   - SMTP smuggling defence: message content with a bare <LF> or bare <CR>
//     is refused (CVE-2023-51764 class), as Postfix's
//     smtpd_forbid_bare_newline does.
//   - PROXY protocol v1/v2 from configured source ranges only.
//
// The commit point of a message is store.PutRaw: the client gets
// "250 2.0.0 OK: queued as <id>" only after it returns nil, and "451 4.3.0"
// otherwise. Message data streams to the store; memory per session is
// bounded whatever the message size.
//
// A Gateway owns its listeners: it accepts connections itself (connection
// limits, PROXY header) and hands admitted connections to go-smtp. Every
// connection is one session; it logs one JSON line (log/slog) when it ends,
// and one per transaction, each carrying message_id.
//
// The package reads no flags, environment or signals: it takes a Config
// value. internal/pipeline registers the flags and builds the Gateway; the
// commands (smtpgw/cmd/smtpgw, `letterbox dev`) handle SIGTERM and call
// ReloadTLS on SIGHUP.
package smtpgw
