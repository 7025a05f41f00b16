// Package dkimcanon is the canonicalization shared by DKIM signatures (RFC
// 6376) and ARC sets (RFC 8617), which sign and verify the same way:
//
//   - header canonicalization, simple and relaxed (RFC 6376 §3.4.1, §3.4.2);
//   - body canonicalization, simple and relaxed (§3.4.3, §3.4.4), as a
//     streaming hasher;
//   - header field selection for h=, bottom-up, each instance once (§5.4.2);
//   - emptying the b= tag of a signature field before hashing it (§3.7;
//     RFC 8617 §5.1.1 for ARC-Seal), and the order of an ARC set's fields
//     in a seal's hash (RFC 8617 §5.1.1);
//   - reading a header block into raw fields, as sent or as a verifier sees
//     it.
//
// go-msgauth has the same code but does not export it. mailauth verifies
// ARC chains with this package and forward seals them with it.
//
// It reads fields as bytes to hash, never for what they mean: the From
// field that DMARC evaluates is read once, by package parser, and handed
// to mailauth.
package dkimcanon

import "strings"

// Algorithm is a canonicalization algorithm (RFC 6376 §3.4).
type Algorithm int

const (
	// Simple tolerates almost no change (RFC 6376 §3.4.1, §3.4.3).
	Simple Algorithm = iota
	// Relaxed tolerates white space changes and header refolding (RFC
	// 6376 §3.4.2, §3.4.4).
	Relaxed
)

// String returns the algorithm's name in a c= tag.
func (a Algorithm) String() string {
	if a == Relaxed {
		return "relaxed"
	}
	return "simple"
}

// ParseAlgorithms reads a c= tag value, "header/body" (RFC 6376 §3.5): a
// missing part is simple. Only "relaxed" is Relaxed; any other name counts
// as simple.
func ParseAlgorithms(c string) (header, body Algorithm) {
	h, b, _ := strings.Cut(c, "/")
	return parseAlgorithm(h), parseAlgorithm(b)
}

func parseAlgorithm(s string) Algorithm {
	if s == "relaxed" {
		return Relaxed
	}
	return Simple
}

// Header canonicalizes one raw header field, "Name: value\r\n" with its
// folding: unchanged with Simple (RFC 6376 §3.4.1), RelaxedHeader with
// Relaxed.
func Header(raw string, alg Algorithm) string {
	if alg != Relaxed {
		return raw
	}
	return RelaxedHeader(raw)
}

// RelaxedHeader is relaxed header canonicalization (RFC 6376 §3.4.2): the
// name lower-cased, the value unfolded, runs of white space made one space,
// none around the colon or at the end, and CRLF after. A field without a
// colon is taken as a name with an empty value.
func RelaxedHeader(raw string) string {
	k, v, ok := strings.Cut(raw, ":")
	if !ok {
		return strings.ToLower(strings.TrimSpace(raw)) + ":\r\n"
	}
	k = strings.ToLower(strings.TrimRight(k, " \t"))
	v = strings.Join(strings.FieldsFunc(v, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\r' || r == '\n'
	}), " ")
	return k + ":" + v + "\r\n"
}

// StripSignature empties the b= tag of a raw signature field
// (DKIM-Signature, ARC-Message-Signature, ARC-Seal), keeping everything
// else as it is, folding and line ending included: the form that is
// hashed last (RFC 6376 §3.7). A field without a b= tag is returned as it
// is.
func StripSignature(raw string) string {
	colon := strings.IndexByte(raw, ':')
	if colon < 0 {
		return raw
	}
	i := colon + 1
	for i < len(raw) {
		end := strings.IndexByte(raw[i:], ';')
		if end < 0 {
			end = len(raw)
		} else {
			end += i
		}
		seg := raw[i:end]
		if eq := strings.IndexByte(seg, '='); eq >= 0 && strings.TrimSpace(seg[:eq]) == "b" {
			rest := raw[end:]
			if end == len(raw) {
				// Keep the field's line ending.
				rest = ""
				if strings.HasSuffix(seg, "\r\n") {
					rest = "\r\n"
				}
			}
			return raw[:i+eq+1] + rest
		}
		i = end + 1
	}
	return raw
}

// The fields of an ARC set (RFC 8617 §4.1), numbered in the order an
// ARC-Seal hashes each set (§5.1.1).
const (
	ARCAuthenticationResults = iota
	ARCMessageSignature
	ARCSeal
)

// ARCMember returns which field of an ARC set a header field name is
// (ARCAuthenticationResults, ARCMessageSignature or ARCSeal), or -1 for
// any other field. Names are compared without regard to case.
func ARCMember(name string) int {
	switch strings.ToLower(name) {
	case "arc-authentication-results":
		return ARCAuthenticationResults
	case "arc-message-signature":
		return ARCMessageSignature
	case "arc-seal":
		return ARCSeal
	}
	return -1
}
