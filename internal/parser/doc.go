// Package parser turns a raw message into the parsed-message JSON of package
// message: headers, addresses, bodies as a mail client would show them,
// every text part, attachments streamed to the store, and authentication
// verdicts.
//
// It implements, leniently as mail readers must:
//   - RFC 5322 Internet Message Format (header fields, folding, addresses
//     and groups, dates, message identifiers), with RFC 6532 UTF-8 headers;
//   - RFC 2045, RFC 2046 MIME (media types, base64 and quoted-printable,
//     multipart/mixed, alternative, related, digest; message/rfc822);
//   - RFC 2047 encoded words, RFC 2231 parameter continuations and charsets,
//     RFC 2183 Content-Disposition, RFC 2387 multipart/related roots;
//   - RFC 3676 format=flowed text, RFC 5233 sub-addressing (mailbox_hash),
//     RFC 5891 IDNA address forms.
//
// The From field is read once, here, for both the JSON's from and DMARC's
// From identity (RFC 7489 §6.6.1), which mailauth takes from this reading:
// unless the header has exactly one From field naming exactly one mailbox,
// DMARC is permerror. Every address is a well-formed addr-spec (RFC 5322
// §3.4.1); source routes (§4.4) are dropped.
//
// Parse never fails because a message is malformed: what it cannot read is
// listed in Message.Warnings. Nesting depth, part count and header size are
// bounded. Memory stays bounded too: attachments stream to the store, and
// authentication (package mailauth) reads the same bytes concurrently in
// one pass, so the raw message is never held whole.
package parser
