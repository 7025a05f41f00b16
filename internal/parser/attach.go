package parser

import (
	"hash"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// hashWriter counts and hashes what is written to it.
type hashWriter struct {
	h hash.Hash
	n int64
}

func (w *hashWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	w.n += int64(len(p))
	return len(p), nil
}

// softWriter writes to w until the first error, then discards, so that a
// failing consumer (whose error is reported elsewhere) does not stop a
// stream that others still read.
type softWriter struct {
	w   io.Writer
	err error
}

func (s *softWriter) Write(p []byte) (int, error) {
	if s.err == nil {
		_, s.err = s.w.Write(p)
	}
	return len(p), nil
}

// maxKeyName bounds the file name part of an attachment key, in bytes.
const maxKeyName = 120

// safeName turns an attachment file name into the last segment of a store
// key: no path, no control or unusual characters, bounded length, never
// empty, never "." or "..".
func safeName(name, contentType string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for _, r := range name {
		switch {
		case r == utf8.RuneError || unicode.IsControl(r):
			b.WriteByte('_')
		case unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("-_.+()=@,", r):
			if b.Len()+utf8.RuneLen(r) > maxKeyName {
				goto done
			}
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= maxKeyName {
			break
		}
	}
done:
	s := strings.Trim(b.String(), "._")
	if s == "" {
		return "attachment" + extension(contentType)
	}
	return s
}

// extension returns a file extension for unnamed parts. The table is fixed,
// not the system's mime.types, so keys are the same on every machine.
func extension(contentType string) string {
	switch contentType {
	case "message/rfc822", "message/global":
		return ".eml"
	case "text/plain":
		return ".txt"
	case "text/html":
		return ".html"
	case "text/calendar":
		return ".ics"
	case "image/png":
		return ".png"
	case "image/jpeg":
		return ".jpg"
	case "image/gif":
		return ".gif"
	case "application/pdf":
		return ".pdf"
	case "application/ms-tnef":
		return ".dat"
	}
	return ".bin"
}

// asciiMeta makes a metadata value ASCII, as stores require.
func asciiMeta(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f {
			return '_'
		}
		return r
	}, s)
}
