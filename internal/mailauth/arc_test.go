package mailauth

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/testenv"
)

const ar1 = "mx1.example.net; spf=pass smtp.mailfrom=alice@example.org; dkim=pass header.d=example.org"

func TestARC(t *testing.T) {
	rsaK := newRSAKey(t)
	edK := newEd25519Key(t)
	z := testenv.StartDNS(t)
	z.TXT("arc._domainkey.example.net", rsaK.record)
	z.TXT("arc._domainkey.lists.example.com", rsaK.record)
	z.TXT("ed._domainkey.example.net", edK.record)
	z.ServFail("down._domainkey.example.net")
	c := newChecker(t, z.Addr, 2*time.Second)

	one := arcSeal(t, []byte(baseMsg), rsaK, "example.net", "arc", "none", ar1)
	two := arcSeal(t, one, rsaK, "lists.example.com", "arc", "pass", "lists.example.com; arc=pass")
	// A mailing list changes the subject and the body after instance 1.
	listed := bytes.Replace(one, []byte("Subject: Quarterly report"), []byte("Subject: [team] Quarterly report"), 1)
	listed = append(listed, []byte("-- \r\nteam mailing list\r\n")...)
	listedSealed := arcSeal(t, listed, rsaK, "lists.example.com", "arc", "pass", "lists.example.com; arc=pass")

	tests := []struct {
		name      string
		msg       []byte
		result    string
		instances int
		reason    string // a regexp the reason must match
	}{
		{"no ARC headers", []byte(baseMsg), "none", 0, "^$"},
		{"one set", one, "pass", 1, "^$"},
		{"two sets", two, "pass", 2, "^$"},
		{"modified by a list that sealed its change", listedSealed, "pass", 2, "^$"},
		{"ed25519 seal", arcSeal(t, []byte(baseMsg), edK, "example.net", "ed", "none", ar1), "pass", 1, "^$"},
		{"body changed after sealing", bytes.Replace(one, []byte("numbers"), []byte("NUMBERS"), 1), "fail", 1,
			"^ARC-Message-Signature i=1: body hash did not verify$"},
		{"signed header changed after sealing", bytes.Replace(one, []byte("Quarterly"), []byte("Annual"), 1), "fail", 1,
			"^ARC-Message-Signature i=1: "},
		{"modified by a list that did not seal", listed, "fail", 1, "^ARC-Message-Signature i=1: body hash did not verify$"},
		{"older AAR changed", bytes.Replace(two, []byte("spf=pass"), []byte("spf=fail"), 1), "fail", 2, "^ARC-Seal i=2: "},
		{"newest seal says fail", arcSeal(t, one, rsaK, "lists.example.com", "arc", "fail", "lists.example.com; arc=fail"), "fail", 2,
			"^chain marked failed at instance 2$"},
		{"second seal with cv=none", arcSeal(t, one, rsaK, "lists.example.com", "arc", "none", "lists.example.com; arc=none"), "fail", 2,
			"^ARC-Seal i=2 has cv=none, want pass$"},
		{"first seal with cv=pass", arcSeal(t, []byte(baseMsg), rsaK, "example.net", "arc", "pass", ar1), "fail", 1,
			"^ARC-Seal i=1 has cv=pass, want none$"},
		{"AMS of instance 1 removed", removeField(two, "ARC-Message-Signature: i=1"), "fail", 2, "^ARC set 1 incomplete or missing$"},
		{"duplicate seal", append([]byte(firstField(one, "ARC-Seal")), one...), "fail", 1, "^instance 1 has more than one ARC-Seal$"},
		{"instance out of range", bytes.Replace(one, []byte("ARC-Seal: i=1"), []byte("ARC-Seal: i=51"), 1), "fail", 1, "^ARC-Seal: invalid instance$"},
		{"key not in DNS", arcSeal(t, []byte(baseMsg), rsaK, "example.net", "nokey", "none", ar1), "fail", 1,
			"^ARC-Message-Signature i=1: no key at nokey._domainkey.example.net$"},
		{"key lookup servfail", arcSeal(t, []byte(baseMsg), rsaK, "example.net", "down", "none", ar1), "temperror", 1,
			"^key down._domainkey.example.net: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := check(t, c, nil, tt.msg)
			if a.ARC.Result != tt.result || a.ARC.Instances != tt.instances || !regexp.MustCompile(tt.reason).MatchString(a.ARC.Reason) {
				t.Fatalf("arc = %+v, want %s with %d instances, reason matching %q", a.ARC, tt.result, tt.instances, tt.reason)
			}
			if !strings.Contains(a.AuthenticationResults, "; arc="+tt.result) {
				t.Errorf("Authentication-Results %q lacks arc=%s", a.AuthenticationResults, tt.result)
			}
		})
	}
}

func removeField(msg []byte, prefix string) []byte {
	var out []string
	skipping := false
	for _, line := range strings.SplitAfter(string(msg), "\r\n") {
		if strings.HasPrefix(line, prefix) {
			skipping = true
			continue
		}
		if skipping && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) {
			continue
		}
		skipping = false
		out = append(out, line)
	}
	return []byte(strings.Join(out, ""))
}

func firstField(msg []byte, name string) string {
	for _, f := range splitFields(string(msg[:bytes.Index(msg, []byte("\r\n\r\n"))+2])) {
		if f.Name == name {
			return f.Raw
		}
	}
	return ""
}

// dkimpy returns a python3 that has dkimpy and authres (the ARC reference
// implementation), or skips (locally) or fails (CI).
func dkimpy(t *testing.T) string {
	t.Helper()
	return testenv.Python(t, "apt-get install python3-dkim python3-authres", "dkim", "authres")
}

func runDkimpy(t *testing.T, py string, req map[string]any) map[string]string {
	t.Helper()
	var resp map[string]string
	testenv.RunJSON(t, &resp, req, py, "testdata/dkimpy_arc.py")
	return resp
}

// TestARCInteropDkimpy checks chains both ways against dkimpy, an
// independent ARC implementation: chains it seals must validate here, and
// chains sealed by this package's test sealer must validate there.
func TestARCInteropDkimpy(t *testing.T) {
	py := dkimpy(t)
	k := newRSAKey(t)
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.signer.(*rsa.PrivateKey))}))
	z := testenv.StartDNS(t)
	z.TXT("arc._domainkey.example.net", k.record)
	z.TXT("arc._domainkey.lists.example.com", k.record)
	c := newChecker(t, z.Addr, 2*time.Second)
	keys := map[string]string{"arc._domainkey.example.net": k.record, "arc._domainkey.lists.example.com": k.record}

	pySeal := func(msg []byte, domain, srvID, ar string) []byte {
		withAR := append([]byte("Authentication-Results: "+ar+"\r\n"), msg...)
		resp := runDkimpy(t, py, map[string]any{"op": "sign", "message": base64.StdEncoding.EncodeToString(withAR),
			"selector": "arc", "domain": domain, "srv_id": srvID, "privkey": keyPEM, "keys": keys})
		h, err := base64.StdEncoding.DecodeString(resp["headers"])
		if err != nil || len(h) == 0 {
			t.Fatalf("dkimpy sealed nothing: %v %q", err, resp)
		}
		return append(h, withAR...)
	}
	pyVerify := func(msg []byte) string {
		resp := runDkimpy(t, py, map[string]any{"op": "verify", "message": base64.StdEncoding.EncodeToString(msg), "keys": keys})
		return resp["cv"] + " " + resp["reason"]
	}

	t.Run("dkimpy seals, we verify", func(t *testing.T) {
		one := pySeal([]byte(baseMsg), "example.net", "mx1.example.net", ar1)
		if a := check(t, c, nil, one); a.ARC.Result != "pass" {
			t.Fatalf("one dkimpy set: arc = %+v, want pass", a.ARC)
		}
		two := pySeal(one, "lists.example.com", "lists.example.com", "lists.example.com; arc=pass")
		if a := check(t, c, nil, two); a.ARC.Result != "pass" || a.ARC.Instances != 2 {
			t.Fatalf("two dkimpy sets: arc = %+v, want pass with 2 instances", a.ARC)
		}
		tampered := bytes.Replace(two, []byte("numbers"), []byte("NUMBERS"), 1)
		if a := check(t, c, nil, tampered); a.ARC.Result != "fail" {
			t.Fatalf("tampered dkimpy chain: arc = %+v, want fail", a.ARC)
		}
	})
	t.Run("we seal, dkimpy verifies", func(t *testing.T) {
		one := arcSeal(t, []byte(baseMsg), k, "example.net", "arc", "none", ar1)
		if got := pyVerify(one); !strings.HasPrefix(got, "pass") {
			t.Fatalf("dkimpy on our one-set chain: %s", got)
		}
		two := arcSeal(t, one, k, "lists.example.com", "arc", "pass", "lists.example.com; arc=pass")
		if got := pyVerify(two); !strings.HasPrefix(got, "pass") {
			t.Fatalf("dkimpy on our two-set chain: %s", got)
		}
		if got := pyVerify(bytes.Replace(two, []byte("numbers"), []byte("NUMBERS"), 1)); !strings.HasPrefix(got, "fail") {
			t.Fatalf("dkimpy on a tampered chain: %s, want fail", got)
		}
	})
}
