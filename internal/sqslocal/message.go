package sqslocal

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// attrValue is a message attribute as the JSON protocol carries it
// (BinaryValue is base64 on the wire; encoding/json does that for []byte).
type attrValue struct {
	DataType         string   `json:"DataType"`
	StringValue      *string  `json:"StringValue,omitempty"`
	BinaryValue      []byte   `json:"BinaryValue,omitempty"`
	StringListValues []string `json:"StringListValues,omitempty"`
	BinaryListValues [][]byte `json:"BinaryListValues,omitempty"`
}

// message is one stored message.
type message struct {
	id       string
	body     string
	md5Body  string
	attrs    map[string]attrValue
	md5Attrs string
	size     int // body plus attributes, as SQS counts it

	sent         time.Time // SentTimestamp; kept when moved to a dead-letter queue
	visibleAt    time.Time // receivable from then on
	receiveCount int
	firstReceive time.Time
	lastReceive  time.Time // start of the 12-hour visibility budget
	receipt      string    // the most recent receipt handle; "" before the first receive
}

func md5Hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// validBody reports whether s holds only the characters SQS allows in a
// message body: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
// #x10000-#x10FFFF (SendMessage API reference, after the W3C XML Char
// production). Invalid UTF-8 decodes to RuneError U+FFFD, which is allowed,
// so it is checked separately.
func validBody(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == 0x9 || r == 0xA || r == 0xD:
		case r >= 0x20 && r <= 0xD7FF:
		case r >= 0xE000 && r <= 0xFFFD:
		case r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
	}
	return true
}

// checkAttributes validates message attributes (Developer Guide, "Amazon SQS
// message attributes") and returns the bytes they add to the message size:
// each attribute's name, data type and value count.
func checkAttributes(attrs map[string]attrValue) (int, *apiError) {
	if len(attrs) > MaxMessageAttributes {
		return 0, errInvalidParameterValue("Number of message attributes [%d] exceeds the allowed maximum [%d].", len(attrs), MaxMessageAttributes)
	}
	size := 0
	for name, v := range attrs {
		if !validAttrName(name) {
			return 0, errInvalidParameterValue("Message (user) attribute name '%s' is invalid.", name)
		}
		base, _, _ := strings.Cut(v.DataType, ".")
		if len(v.StringListValues) > 0 || len(v.BinaryListValues) > 0 {
			return 0, errInvalidParameterValue("Message attribute list values in '%s' are not supported.", name)
		}
		switch base {
		case "String", "Number":
			if v.StringValue == nil || *v.StringValue == "" {
				return 0, errInvalidParameterValue("Message (user) attribute '%s' must contain a non-empty value of message attribute type '%s'.", name, v.DataType)
			}
			if !validBody(*v.StringValue) {
				return 0, errInvalidParameterValue("Message (user) attribute '%s' contains invalid characters.", name)
			}
			size += len(*v.StringValue)
		case "Binary":
			if len(v.BinaryValue) == 0 {
				return 0, errInvalidParameterValue("Message (user) attribute '%s' must contain a non-empty value of message attribute type '%s'.", name, v.DataType)
			}
			size += len(v.BinaryValue)
		default:
			return 0, errInvalidParameterValue("The type of message (user) attribute '%s' is invalid. You must use only the following supported type prefixes: Binary, Number, String.", name)
		}
		size += len(name) + len(v.DataType)
	}
	return size, nil
}

func validAttrName(n string) bool {
	if n == "" || len(n) > 256 || n[0] == '.' || n[len(n)-1] == '.' || strings.Contains(n, "..") {
		return false
	}
	l := strings.ToLower(n)
	if strings.HasPrefix(l, "aws.") || strings.HasPrefix(l, "amazon.") {
		return false
	}
	for _, r := range n {
		if !(r == '_' || r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// md5OfAttributes is MD5OfMessageAttributes as the Developer Guide's
// "Calculating the MD5 message digest for message attributes" defines it:
// attributes sorted by name, each encoded as name, data type (each preceded
// by its 4-byte big-endian length), a transport byte (1 string, 2 binary), and
// the value preceded by its length.
func md5OfAttributes(attrs map[string]attrValue) string {
	if len(attrs) == 0 {
		return ""
	}
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	sort.Strings(names)
	var b []byte
	put := func(p []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	for _, n := range names {
		v := attrs[n]
		put([]byte(n))
		put([]byte(v.DataType))
		if strings.HasPrefix(v.DataType, "Binary") {
			b = append(b, 2)
			put(v.BinaryValue)
		} else {
			b = append(b, 1)
			put([]byte(*v.StringValue))
		}
	}
	return md5Hex(b)
}

// selectAttributes returns the attributes ReceiveMessage's
// MessageAttributeNames asks for: "All", ".*", "prefix.*" or exact names.
func selectAttributes(attrs map[string]attrValue, want []string) map[string]attrValue {
	if len(attrs) == 0 || len(want) == 0 {
		return nil
	}
	out := map[string]attrValue{}
	for n, v := range attrs {
		for _, w := range want {
			if w == "All" || w == ".*" || w == n ||
				strings.HasSuffix(w, ".*") && strings.HasPrefix(n, strings.TrimSuffix(w, "*")) {
				out[n] = v
				break
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
