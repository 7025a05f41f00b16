package forward

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/internal/dkimcanon"
)

// ARCKey seals forwarded messages (RFC 8617): its public half is
// published as a DKIM key record at Selector._domainkey.Domain (see
// DNSRecord).
type ARCKey struct {
	// Signer is an *rsa.PrivateKey (at least 1024 bits, RFC 8301; 2048
	// recommended) or an ed25519.PrivateKey (RFC 8463).
	Signer   crypto.Signer
	Selector string
	Domain   string
}

// ParseARCKey reads a PEM private key: PKCS #1 ("RSA PRIVATE KEY") or
// PKCS #8 ("PRIVATE KEY", RSA or Ed25519).
func ParseARCKey(pemData []byte, selector, domain string) (*ARCKey, error) {
	if selector == "" || domain == "" {
		return nil, errors.New("arc key: selector and domain are required")
	}
	block, _ := pem.Decode(pemData)
	if block == nil {
		return nil, errors.New("arc key: no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("arc key: PEM block %q: want RSA PRIVATE KEY or PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("arc key: %w", err)
	}
	k := &ARCKey{Selector: selector, Domain: strings.TrimSuffix(domain, ".")}
	switch key := key.(type) {
	case *rsa.PrivateKey:
		if key.N.BitLen() < 1024 {
			return nil, fmt.Errorf("arc key: RSA key of %d bits is too short (RFC 8301: at least 1024, 2048 recommended)", key.N.BitLen())
		}
		k.Signer = key
	case ed25519.PrivateKey:
		k.Signer = key
	default:
		return nil, fmt.Errorf("arc key: %T is not supported (RSA or Ed25519)", key)
	}
	return k, nil
}

// LoadARCKey reads ParseARCKey's PEM from a file.
func LoadARCKey(path, selector, domain string) (*ARCKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("arc key: %w", err)
	}
	return ParseARCKey(b, selector, domain)
}

// algorithm is the a= tag value.
func (k *ARCKey) algorithm() string {
	if _, ok := k.Signer.(ed25519.PrivateKey); ok {
		return "ed25519-sha256"
	}
	return "rsa-sha256"
}

// DNSRecord returns the TXT record to publish at
// Selector._domainkey.Domain.
func (k *ARCKey) DNSRecord() string {
	switch pub := k.Signer.Public().(type) {
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	default:
		der, _ := x509.MarshalPKIXPublicKey(pub)
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	}
}

// sign signs a SHA-256 digest: RSASSA-PKCS1-v1_5 (RFC 6376 §3.3.1) or
// Ed25519 over the digest (RFC 8463 §3).
func (k *ARCKey) sign(digest []byte) (string, error) {
	opts := crypto.Hash(crypto.SHA256)
	if _, ok := k.Signer.(ed25519.PrivateKey); ok {
		opts = crypto.Hash(0)
	}
	sig, err := k.Signer.Sign(rand.Reader, digest, opts)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// amsHeaders are the fields the ARC-Message-Signature covers, each as
// often as it occurs; From is signed once more than it occurs, so that
// adding a From field breaks the signature (RFC 6376 §8.15).
var amsHeaders = []string{
	"From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"List-Id", "List-Unsubscribe", "List-Unsubscribe-Post", "DKIM-Signature",
}

// arcChain is what sealing needs of the existing chain.
type arcChain struct {
	sets [][3]string // [AAR, AMS, AS] raw fields, by instance - 1
	// topCV is the newest seal's cv= value.
	topCV string
	err   error // structurally broken
}

func collectChain(fields []dkimcanon.Field) arcChain {
	var c arcChain
	byInst := map[int]*[3]string{}
	top := 0
	for _, f := range fields {
		idx := dkimcanon.ARCMember(f.Name)
		if idx < 0 {
			continue
		}
		first, _, _ := strings.Cut(f.Value(), ";")
		k, n, _ := strings.Cut(first, "=")
		inst, err := strconv.Atoi(strings.TrimSpace(n))
		if strings.TrimSpace(k) != "i" || err != nil || inst < 1 || inst > 50 {
			c.err = fmt.Errorf("%s without a valid i= first", f.Name)
			continue
		}
		s := byInst[inst]
		if s == nil {
			s = &[3]string{}
			byInst[inst] = s
		}
		if s[idx] != "" {
			c.err = fmt.Errorf("instance %d has two %s fields", inst, f.Name)
		}
		s[idx] = f.Raw
		top = max(top, inst)
	}
	for i := 1; i <= top; i++ {
		s := byInst[i]
		if s == nil || s[0] == "" || s[1] == "" || s[2] == "" {
			c.err = fmt.Errorf("ARC set %d incomplete", i)
			c.sets = append(c.sets, [3]string{})
			continue
		}
		c.sets = append(c.sets, *s)
	}
	if top > 0 && c.sets[top-1][2] != "" {
		for _, tag := range strings.Split(c.sets[top-1][2][strings.IndexByte(c.sets[top-1][2], ':')+1:], ";") {
			if k, v, ok := strings.Cut(tag, "="); ok && strings.TrimSpace(k) == "cv" {
				c.topCV = strings.ToLower(strings.TrimSpace(v))
			}
		}
	}
	return c
}

// sealInput is one message's sealing parameters.
type sealInput struct {
	fields   []dkimcanon.Field
	bodyHash []byte
	chain    arcChain
	// cv is the chain validation status (RFC 8617 §4.4): none, pass or fail.
	cv string
	// authResults is the Authentication-Results value: "authserv-id;
	// method=result …".
	authResults string
	now         time.Time
}

// seal returns the new ARC set (RFC 8617 §5.1), to put on top of the
// message: ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results,
// with instance i = existing sets + 1. When cv is fail, the seal covers
// only the new set (§5.1.2).
func (k *ARCKey) seal(in sealInput) ([]byte, error) {
	inst := len(in.chain.sets) + 1
	if inst > 50 {
		return nil, errors.New("the ARC chain already has 50 sets (RFC 8617 §4.2.1)")
	}
	ts := strconv.FormatInt(in.now.Unix(), 10)
	alg := k.algorithm()

	aar := fold("ARC-Authentication-Results: i="+strconv.Itoa(inst)+"; "+oneLine(in.authResults)) + "\r\n"

	// ARC-Message-Signature: a DKIM signature without v= (§4.1.2).
	var names []string
	picked := map[string]int{}
	for _, f := range in.fields {
		picked[strings.ToLower(f.Name)]++
	}
	for _, n := range amsHeaders {
		count := picked[strings.ToLower(n)]
		if n == "From" {
			count++
		}
		for range count {
			names = append(names, n)
		}
	}
	amsHead := fmt.Sprintf("ARC-Message-Signature: i=%d; a=%s; c=relaxed/relaxed;\r\n d=%s; s=%s; t=%s;\r\n h=%s;\r\n bh=%s;\r\n b=",
		inst, alg, k.Domain, k.Selector, ts, foldList(names), base64.StdEncoding.EncodeToString(in.bodyHash))
	h := sha256.New()
	p := dkimcanon.NewPicker(in.fields)
	for _, n := range names {
		if raw, ok := p.Pick(n); ok {
			h.Write([]byte(dkimcanon.RelaxedHeader(raw)))
		}
	}
	h.Write([]byte(strings.TrimSuffix(dkimcanon.RelaxedHeader(amsHead), "\r\n")))
	sig, err := k.sign(h.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("arc: sign: %w", err)
	}
	ams := amsHead + foldB64(sig) + "\r\n"

	// ARC-Seal over the chain, oldest first, then this set (§5.1.1).
	sealHead := fmt.Sprintf("ARC-Seal: i=%d; a=%s; t=%s; cv=%s;\r\n d=%s; s=%s;\r\n b=", inst, alg, ts, in.cv, k.Domain, k.Selector)
	h = sha256.New()
	if in.cv != "fail" {
		for _, s := range in.chain.sets {
			for _, raw := range s {
				h.Write([]byte(dkimcanon.RelaxedHeader(raw)))
			}
		}
	}
	h.Write([]byte(dkimcanon.RelaxedHeader(aar)))
	h.Write([]byte(dkimcanon.RelaxedHeader(ams)))
	h.Write([]byte(strings.TrimSuffix(dkimcanon.RelaxedHeader(sealHead), "\r\n")))
	sig, err = k.sign(h.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("arc: sign: %w", err)
	}
	return []byte(sealHead + foldB64(sig) + "\r\n" + ams + aar), nil
}

// oneLine removes line breaks from a header value.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' }), " ")
}

// fold breaks a header field after "; " so lines stay under 78
// characters where possible (RFC 5322 §2.2.3).
func fold(s string) string {
	var b strings.Builder
	lineLen := 0
	for _, part := range strings.SplitAfter(s, "; ") {
		if lineLen > 0 && lineLen+len(part) > 76 {
			cur := strings.TrimSuffix(b.String(), " ")
			b.Reset()
			b.WriteString(cur)
			b.WriteString("\r\n ")
			lineLen = 1
		}
		b.WriteString(part)
		lineLen += len(part)
	}
	return b.String()
}

// foldList joins h= names, folding the list with ":" kept at line ends.
func foldList(names []string) string {
	var b strings.Builder
	lineLen := 3
	for i, n := range names {
		if i > 0 {
			b.WriteByte(':')
			lineLen++
			if lineLen+len(n) > 72 {
				b.WriteString("\r\n ")
				lineLen = 1
			}
		}
		b.WriteString(n)
		lineLen += len(n)
	}
	return strings.ToLower(b.String())
}

// foldB64 folds a base64 value (b=) into 72-character lines; verifiers
// strip the white space (RFC 6376 §3.5).
func foldB64(s string) string {
	var b strings.Builder
	for len(s) > 72 {
		b.WriteString(s[:72])
		b.WriteString("\r\n ")
		s = s[72:]
	}
	b.WriteString(s)
	return b.String()
}
