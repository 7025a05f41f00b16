// Package scan asks content scanners about a message while it is being
// received: rspamd for spam (its HTTP protocol, POST /checkv2, with the
// SMTP envelope in request headers) and ClamAV's clamd for viruses (its
// INSTREAM command over TCP or a unix socket).
//
// The message is never held whole: Tee hands each block the gateway reads
// to every scanner through a pipe (io.Pipe, so at most one block is in
// flight per scanner) before passing it on to the store, and Wait returns
// the verdicts once the last block has gone through. Each scanner has a
// deadline (Timeout): for every block it is given, and for its verdict
// after the last one. A scanner that misses it, or fails, gives a verdict
// of "error" and the error; the caller decides whether that fails open or
// closed. A message larger than a scanner's size limit is not scanned by
// it (ErrTooLarge): retrying would not help.
//
// References: rspamd's protocol (https://rspamd.com/doc/developers/protocol.html);
// clamd(8), INSTREAM.
package scan
