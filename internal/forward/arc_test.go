package forward

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/letterboxmail/letterbox/internal/dkimcanon"
	"github.com/letterboxmail/letterbox/internal/mailauth"
	"github.com/letterboxmail/letterbox/internal/testenv"
	"github.com/letterboxmail/letterbox/message"
)

var (
	rsaOnce sync.Once
	rsaPriv *rsa.PrivateKey
)

// rsaKey returns a 2048-bit ARC key for fwd.example.net, made once per
// test binary.
func rsaKey(t testing.TB) *ARCKey {
	t.Helper()
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaPriv = k
	})
	return &ARCKey{Signer: rsaPriv, Selector: "arc", Domain: "fwd.example.net"}
}

func edKey(t testing.TB) *ARCKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &ARCKey{Signer: priv, Selector: "ed", Domain: "fwd.example.net"}
}

// keyRecords publishes keys, by DNS name, in z and returns them for
// dkimpy.
func keyRecords(z *testenv.DNS, keys ...*ARCKey) map[string]string {
	recs := map[string]string{}
	for _, k := range keys {
		name := k.Selector + "._domainkey." + k.Domain
		z.TXT(name, k.DNSRecord())
		recs[name] = k.DNSRecord()
	}
	return recs
}

// arcVerdict validates data's chain with internal/mailauth.
func arcVerdict(t *testing.T, dnsAddr string, data []byte) *message.ARCResult {
	t.Helper()
	c, err := mailauth.New(mailauth.Config{Resolver: dnsAddr, Timeout: 2 * time.Second, AuthServID: "dest.test"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.Check(context.Background(), nil, bytes.NewReader(data), nil) // ARC only: no DMARC
	if err != nil {
		t.Fatal(err)
	}
	return a.ARC
}

// dkimpyVerdict validates data's chain with dkimpy (the reference ARC
// implementation, behind arcverify), or skips (locally) or fails (CI)
// without it.
func dkimpyVerdict(t *testing.T, keys map[string]string, data []byte) string {
	t.Helper()
	py := testenv.Python(t, "apt-get install python3-dkim python3-nacl", "dkim", "nacl")
	var resp struct{ CV, Reason string }
	testenv.RunJSON(t, &resp, map[string]any{"message": base64.StdEncoding.EncodeToString(data), "keys": keys}, py, "testdata/arcverify.py")
	return strings.TrimSpace(resp.CV + " " + resp.Reason)
}

// forwardOnce forwards fx's message with key through a fresh server, by an
// action with arc_seal, and returns the bytes the server received.
func forwardOnce(t *testing.T, fx *fixture, key *ARCKey) []byte {
	t.Helper()
	srv := startSMTP(t, serverOpts{})
	f := testForwarder(t, fx.st, func(c *Config) { c.ARC = key; c.Now = time.Now })
	a := smarthostAction(srv, "bob@b.test")
	a.ARCSeal = true
	wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, a, noExpand), "", false, 250)
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	return msgs[0].Data
}

func TestARCSeal(t *testing.T) {
	for _, key := range []*ARCKey{rsaKey(t), edKey(t)} {
		t.Run(key.algorithm(), func(t *testing.T) {
			z := testenv.StartDNS(t)
			keys := keyRecords(z, key)
			dnsAddr := z.Addr
			fx := newFixture(t, rawMsg)
			data := forwardOnce(t, fx, key)

			arc, rest := bodyAfterARC(data)
			if !bytes.Equal(rest, []byte(rawMsg)) {
				t.Fatalf("the message under the ARC set differs:\n%q", rest)
			}
			unfolded := strings.ReplaceAll(string(arc), "\r\n ", " ")
			for _, want := range []string{"ARC-Seal: i=1; a=" + key.algorithm() + ";", "cv=none;", "ARC-Message-Signature: i=1;",
				"ARC-Authentication-Results: i=1; " + testAuthRes + "\r\n"} {
				if !strings.Contains(unfolded, want) {
					t.Errorf("ARC set lacks %q:\n%s", want, arc)
				}
			}
			if !strings.HasPrefix(string(data), "ARC-Seal: ") {
				t.Errorf("the ARC-Seal is not on top")
			}
			for _, l := range strings.Split(string(arc), "\r\n") {
				if len(l) > 78 {
					t.Errorf("line of %d characters: %q", len(l), l)
				}
			}
			if v := arcVerdict(t, dnsAddr, data); v.Result != "pass" || v.Instances != 1 {
				t.Errorf("mailauth: %+v, want pass with 1 instance", v)
			}
			// dkimpy (1.1) implements ARC with rsa-sha256 only, as do the
			// big receivers: Ed25519 seals verify here but not there.
			rsaOnly := key.algorithm() == "rsa-sha256"
			if v := dkimpyVerdict(t, keys, data); rsaOnly && !strings.HasPrefix(v, "pass") {
				t.Errorf("dkimpy: %s, want pass", v)
			}
			tampered := bytes.Replace(data, []byte("numbers"), []byte("NUMBERS"), 1)
			if v := arcVerdict(t, dnsAddr, tampered); v.Result != "fail" {
				t.Errorf("mailauth on a changed body: %+v, want fail", v)
			}
			if v := dkimpyVerdict(t, keys, tampered); rsaOnly && !strings.HasPrefix(v, "fail") {
				t.Errorf("dkimpy on a changed body: %s, want fail", v)
			}
			resigned := bytes.Replace(data, []byte("Subject: Quarterly"), []byte("Subject: [list] Quarterly"), 1)
			if v := arcVerdict(t, dnsAddr, resigned); v.Result != "fail" {
				t.Errorf("mailauth on a changed subject: %+v, want fail", v)
			}
		})
	}
}

// Sealing is opt-in per forward action (draft-ietf-dmarc-arc-to-historic
// recommends against new sealing deployments): a configured key alone
// seals nothing, and arc_seal without a key fails the job for good before
// anything is sent.
func TestARCSealOptIn(t *testing.T) {
	t.Run("key, action without arc_seal: sent unsealed", func(t *testing.T) {
		fx := newFixture(t, rawMsg)
		srv := startSMTP(t, serverOpts{})
		f := testForwarder(t, fx.st, func(c *Config) { c.ARC = rsaKey(t) })
		wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, smarthostAction(srv, "bob@b.test"), noExpand), "", false, 250)
		msgs := srv.Messages()
		if len(msgs) != 1 || !bytes.Equal(msgs[0].Data, []byte(rawMsg)) {
			t.Fatalf("%d messages; want the message byte for byte, without an ARC set", len(msgs))
		}
	})
	t.Run("key, action with arc_seal: sealed", func(t *testing.T) {
		if data := forwardOnce(t, newFixture(t, rawMsg), rsaKey(t)); !strings.HasPrefix(string(data), "ARC-Seal: i=1; ") {
			t.Fatalf("not sealed:\n%.300s", data)
		}
	})
	t.Run("arc_seal without a key: permanent failure, nothing sent", func(t *testing.T) {
		fx := newFixture(t, rawMsg)
		srv := startSMTP(t, serverOpts{})
		f := testForwarder(t, fx.st, nil)
		a := smarthostAction(srv, "bob@b.test")
		a.ARCSeal = true
		wantResult(t, f.Forward(context.Background(), fx.job, fx.msg, a, noExpand),
			`^forward: arc_seal is set but no ARC key is configured \(LETTERBOX_ARC_KEY\)$`, false, 0)
		if n := len(srv.Messages()); n != 0 {
			t.Errorf("%d messages sent", n)
		}
	})
}

// TestARCSealChain forwards a message that an earlier hop (another
// letterbox, another domain) already sealed.
func TestARCSealChain(t *testing.T) {
	first := &ARCKey{Signer: rsaKey(t).Signer, Selector: "s1", Domain: "lists.example.com"}
	second := rsaKey(t)
	z := testenv.StartDNS(t)
	keys := keyRecords(z, first, second)
	dnsAddr := z.Addr
	hop1 := forwardOnce(t, newFixture(t, rawMsg), first)

	fx := newFixture(t, string(hop1))
	// The second hop's ingest verified the chain: pass, one instance.
	fx.msg.Auth = &message.Auth{AuthenticationResults: "mx2.example.net; arc=pass; dmarc=fail header.from=example.org",
		ARC: arcVerdict(t, dnsAddr, hop1)}
	if fx.msg.Auth.ARC.Result != "pass" {
		t.Fatalf("first hop: %+v", fx.msg.Auth.ARC)
	}
	hop2 := forwardOnce(t, fx, second)
	if !strings.HasPrefix(string(hop2), "ARC-Seal: i=2; a=rsa-sha256; t=") || !strings.Contains(string(hop2[:200]), "cv=pass;") {
		t.Fatalf("second set:\n%.300s", hop2)
	}
	if !bytes.HasSuffix(hop2, hop1) {
		t.Fatal("the first hop's bytes are not kept under the new set")
	}
	if v := arcVerdict(t, dnsAddr, hop2); v.Result != "pass" || v.Instances != 2 {
		t.Errorf("mailauth: %+v, want pass with 2 instances", v)
	}
	if v := dkimpyVerdict(t, keys, hop2); !strings.HasPrefix(v, "pass") {
		t.Errorf("dkimpy: %s, want pass", v)
	}

	t.Run("a failed chain is sealed with cv=fail over the new set only", func(t *testing.T) {
		fx := newFixture(t, string(hop1))
		fx.msg.Auth = &message.Auth{AuthenticationResults: "mx2.example.net; arc=fail", ARC: &message.ARCResult{Result: "fail", Instances: 1}}
		out := forwardOnce(t, fx, second)
		if !strings.Contains(string(out[:200]), "i=2;") || !strings.Contains(string(out[:200]), "cv=fail;") {
			t.Fatalf("got:\n%.300s", out)
		}
		if v := arcVerdict(t, dnsAddr, out); v.Result != "fail" || v.Reason != "chain marked failed at instance 2" {
			t.Errorf("mailauth: %+v", v)
		}
		// The seal itself verifies: it covers only its own set.
		if err := verifyLastSealOnly(t, out, second); err != nil {
			t.Error(err)
		}
	})
	t.Run("not sealed on top of cv=fail", func(t *testing.T) {
		fx := newFixture(t, string(hop1))
		fx.msg.Auth = &message.Auth{ARC: &message.ARCResult{Result: "fail", Instances: 1}}
		failed := forwardOnceWith(t, fx, second, func(raw string) string { return strings.Replace(raw, "cv=none", "cv=fail", 1) })
		if strings.HasPrefix(string(failed.out), "ARC-Seal: i=2") || !bytes.Equal(failed.out, failed.raw) {
			t.Fatalf("sealed again:\n%.300s", failed.out)
		}
	})
	t.Run("chain state unknown: not sealed", func(t *testing.T) {
		fx := newFixture(t, string(hop1))
		fx.msg.Auth = &message.Auth{ARC: &message.ARCResult{Result: "temperror", Instances: 1}}
		if out := forwardOnce(t, fx, second); !bytes.Equal(out, hop1) {
			t.Fatalf("sealed with an unknown chain state:\n%.300s", out)
		}
	})
	t.Run("no auth results: sealed with none", func(t *testing.T) {
		fx := newFixture(t, rawMsg)
		fx.msg.Auth = nil
		out := forwardOnce(t, fx, second)
		if !strings.Contains(string(out), "ARC-Authentication-Results: i=1; fwd.example.net; none\r\n") {
			t.Fatalf("got:\n%.600s", out)
		}
		if v := arcVerdict(t, dnsAddr, out); v.Result != "pass" {
			t.Errorf("mailauth: %+v", v)
		}
	})
}

type forwarded struct{ raw, out []byte }

// forwardOnceWith stores edit(raw) and forwards it.
func forwardOnceWith(t *testing.T, fx *fixture, key *ARCKey, edit func(string) string) forwarded {
	t.Helper()
	rc, _, err := fx.st.Get(context.Background(), fx.msg.RawKey)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.ReadFrom(rc)
	rc.Close()
	fx2 := newFixture(t, edit(b.String()))
	fx2.msg.Auth = fx.msg.Auth
	return forwarded{raw: []byte(edit(b.String())), out: forwardOnce(t, fx2, key)}
}

// verifyLastSealOnly checks the newest ARC-Seal over its own set alone
// (RFC 8617 §5.1.2, cv=fail).
func verifyLastSealOnly(t *testing.T, data []byte, key *ARCKey) error {
	t.Helper()
	_, fields, err := dkimcanon.ReadHeader(bufio.NewReader(bytes.NewReader(data)), dkimcanon.MaxHeader)
	if err != nil {
		t.Fatal(err)
	}
	seal, ams, aar := fields[0].Raw, fields[1].Raw, fields[2].Raw
	h := sha256.New()
	h.Write([]byte(dkimcanon.RelaxedHeader(aar)))
	h.Write([]byte(dkimcanon.RelaxedHeader(ams)))
	h.Write([]byte(strings.TrimSuffix(dkimcanon.RelaxedHeader(dkimcanon.StripSignature(seal)), "\r\n")))
	i := strings.Index(seal, "b=")
	sig, _ := base64.StdEncoding.DecodeString(strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, seal[i+2:]))
	if err := rsa.VerifyPKCS1v15(key.Signer.Public().(*rsa.PublicKey), crypto.SHA256, h.Sum(nil), sig); err != nil {
		return errorString("the cv=fail seal does not verify over its own set: " + err.Error())
	}
	return nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

// TestCanonicalizationAgainstGoMsgauth checks this package's signing with
// the relaxed canonicalization it seals with against go-msgauth's DKIM:
// DKIM signatures made with these primitives verify with its verifier.
// (dkimcanon compares the body hashes with go-msgauth's.)
func TestCanonicalizationAgainstGoMsgauth(t *testing.T) {
	for _, key := range []*ARCKey{rsaKey(t), edKey(t)} {
		t.Run("DKIM-Signature "+key.algorithm(), func(t *testing.T) {
			msg := "From: Alice <alice@example.org>\r\nTo:   bob@example.net  \r\nSubject: folded\r\n\tsubject  line\r\nX-Other: not signed\r\n\r\n" +
				"Body  with   spaces \r\n\r\n\r\n"
			_, fields, err := dkimcanon.ReadHeader(bufio.NewReader(strings.NewReader(msg)), dkimcanon.MaxHeader)
			if err != nil {
				t.Fatal(err)
			}
			rb := dkimcanon.NewBodyHasher(sha256.New(), dkimcanon.Relaxed, dkimcanon.CRAsSent)
			rb.Write([]byte(msg[strings.Index(msg, "\r\n\r\n")+4:]))
			head := "DKIM-Signature: v=1; a=" + key.algorithm() + "; c=relaxed/relaxed; d=" + key.Domain + "; s=" + key.Selector +
				";\r\n h=from:to:subject:from; bh=" + base64.StdEncoding.EncodeToString(rb.Sum()) + ";\r\n b="
			h := sha256.New()
			p := dkimcanon.NewPicker(fields)
			for _, n := range []string{"from", "to", "subject", "from"} {
				if raw, ok := p.Pick(n); ok {
					h.Write([]byte(dkimcanon.RelaxedHeader(raw)))
				}
			}
			h.Write([]byte(strings.TrimSuffix(dkimcanon.RelaxedHeader(head), "\r\n")))
			sig, err := key.sign(h.Sum(nil))
			if err != nil {
				t.Fatal(err)
			}
			signed := head + foldB64(sig) + "\r\n" + msg
			verifs, err := dkim.VerifyWithOptions(strings.NewReader(signed), &dkim.VerifyOptions{
				LookupTXT: func(string) ([]string, error) { return []string{key.DNSRecord()}, nil },
			})
			if err != nil || len(verifs) != 1 || verifs[0].Err != nil {
				t.Fatalf("go-msgauth: %v %+v", err, verifs)
			}
		})
	}
}

func TestParseARCKey(t *testing.T) {
	rk := rsaKey(t).Signer.(*rsa.PrivateKey)
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tests := []struct {
		name    string
		pem     []byte
		alg     string
		wantErr string
	}{
		{"PKCS #1 RSA", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), "rsa-sha256", ""},
		{"PKCS #8 RSA", pkcs8(rk), "rsa-sha256", ""},
		{"PKCS #8 Ed25519", pkcs8(ek), "ed25519-sha256", ""},
		{"ECDSA", pkcs8(ec), "", "is not supported"},
		{"not PEM", []byte("nope"), "", "no PEM block"},
		{"certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), "", `PEM block "CERTIFICATE"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			os.WriteFile(path, tt.pem, 0o600)
			k, err := LoadARCKey(path, "arc", "fwd.example.net.")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || k.algorithm() != tt.alg || k.Domain != "fwd.example.net" {
				t.Fatalf("key %+v, %v", k, err)
			}
		})
	}
	if _, err := ParseARCKey(pkcs8(ek), "", "fwd.example.net"); err == nil {
		t.Error("no selector accepted")
	}
	if _, err := LoadARCKey(filepath.Join(t.TempDir(), "missing.pem"), "arc", "d.test"); err == nil {
		t.Error("missing file accepted")
	}
}
