package forward

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/testenv"
)

const testSecret = "tops3cr3t-0123456789abcdef"

// katDay is the day the known answers below were taken from postsrsd 1.10
// (timestamp JL).
var katDay = time.Date(2026, 11, 22, 17, 8, 0, 0, time.UTC)

func newTestSRS(t testing.TB, at time.Time, secrets ...string) *SRS {
	t.Helper()
	if len(secrets) == 0 {
		secrets = []string{testSecret}
	}
	s, err := NewSRS("fwd.example.net", secrets...)
	if err != nil {
		t.Fatal(err)
	}
	s.Now = func() time.Time { return at }
	return s
}

func TestSRSForward(t *testing.T) {
	s := newTestSRS(t, katDay)
	tests := []struct {
		name, in, want string
	}{
		// Known answers from postsrsd 1.10 with the same secret and day.
		{"plain", "alice@example.org", "SRS0=Jaaa=JL=example.org=alice@fwd.example.net"},
		{"case kept, hash over lower case", "Bob.Smith+tag@Example.COM", "SRS0=k/ob=JL=Example.COM=Bob.Smith+tag@fwd.example.net"},
		{"local part with the separator", "a=b@example.org", "SRS0=82yz=JL=example.org=a=b@fwd.example.net"},
		{"another forwarder's SRS0 becomes SRS1", "SRS0=abcd=XY=example.com=bob@fwd1.test", "SRS1=Uv6a=fwd1.test==abcd=XY=example.com=bob@fwd.example.net"},
		{"SRS0 with + separator", "SRS0+abcd=XY=example.com=bob@fwd1.test", "SRS1=jJlu=fwd1.test=+abcd=XY=example.com=bob@fwd.example.net"},
		{"SRS1 re-signed, first hop kept", "SRS1=abcd=fwd1.test==HHHH=XY=example.com=bob@fwd2.test", "SRS1=SXwL=fwd1.test==HHHH=XY=example.com=bob@fwd.example.net"},
		{"already at the SRS domain", "x@fwd.example.net", "x@fwd.example.net"},
		{"our own SRS0 is not wrapped again", "SRS0=Jaaa=JL=example.org=alice@FWD.example.net", "SRS0=Jaaa=JL=example.org=alice@FWD.example.net"},
		{"null sender stays null", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Forward(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("Forward(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
	for _, bad := range []string{"nodomain", "user@", "@example.org", "a@ex=ample.org", "a@ex<ample.org"} {
		if got, err := s.Forward(bad); err == nil {
			t.Errorf("Forward(%q) = %q, want an error", bad, got)
		}
	}
}

func TestSRSReverse(t *testing.T) {
	s := newTestSRS(t, katDay)
	fwd := func(addr string) string {
		t.Helper()
		out, err := s.Forward(addr)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	plain := fwd("alice@example.org")
	at := func(d time.Duration, secrets ...string) *SRS { return newTestSRS(t, katDay.Add(d), secrets...) }
	tests := []struct {
		name    string
		srs     *SRS
		in      string
		want    string
		wantErr error
	}{
		{"round trip", s, plain, "alice@example.org", nil},
		{"local part with separators", s, fwd("a=b+c@example.org"), "a=b+c@example.org", nil},
		{"lower-cased by an MTA", s, strings.ToLower(plain), "alice@example.org", nil},
		{"upper-cased domain", s, strings.Replace(plain, "fwd.example.net", "FWD.EXAMPLE.NET", 1), "alice@example.org", nil},
		{"SRS1 gives the previous hop's SRS0", s, fwd("SRS0=abcd=XY=example.com=bob@fwd1.test"), "SRS0=abcd=XY=example.com=bob@fwd1.test", nil},
		{"SRS1 keeps a + separator", s, fwd("SRS0+abcd=XY=example.com=bob@fwd1.test"), "SRS0+abcd=XY=example.com=bob@fwd1.test", nil},
		{"20 days old", at(20 * srsDay), plain, "alice@example.org", nil},
		{"21 days old (the limit)", at(21 * srsDay), plain, "alice@example.org", nil},
		{"22 days old", at(22 * srsDay), plain, "", ErrSRSExpired},
		{"from the future", at(-2 * srsDay), plain, "", ErrSRSExpired},
		{"a whole cycle later", at(srsSlots * srsDay), plain, "alice@example.org", nil},
		{"rotated: old secret still verifies", at(0, "n3w-s3cret-0123456789abcdef", testSecret), plain, "alice@example.org", nil},
		{"unknown secret", at(0, "n3w-s3cret-0123456789abcdef"), plain, "", ErrSRSHash},
		{"bad hash", s, strings.Replace(plain, "Jaaa", "Jaab", 1), "", ErrSRSHash},
		{"hash too short", s, strings.Replace(plain, "Jaaa", "Jaa", 1), "", ErrSRSHash},
		{"user changed", s, strings.Replace(plain, "alice@", "mallory@", 1), "", ErrSRSHash},
		{"domain changed", s, strings.Replace(plain, "example.org", "example.com", 1), "", ErrSRSHash},
		{"timestamp changed", s, strings.Replace(plain, "=JL=", "=JK=", 1), "", ErrSRSHash},
		{"SRS1 hash bad", s, "SRS1=AAAA=fwd1.test==abcd=XY=example.com=bob@fwd.example.net", "", ErrSRSHash},
		{"bad timestamp character", s, "SRS0=Jaaa=J1=example.org=alice@fwd.example.net", "", ErrSRSMalformed},
		{"timestamp too long", s, "SRS0=Jaaa=JLL=example.org=alice@fwd.example.net", "", ErrSRSMalformed},
		{"missing user", s, "SRS0=Jaaa=JL=example.org@fwd.example.net", "", ErrSRSMalformed},
		{"empty host", s, "SRS0=Jaaa=JL==alice@fwd.example.net", "", ErrSRSMalformed},
		{"SRS1 without opaque part", s, "SRS1=AAAA=fwd1.test@fwd.example.net", "", ErrSRSMalformed},
		{"SRS1 opaque part without separator", s, "SRS1=AAAA=fwd1.test=abcd@fwd.example.net", "", ErrSRSMalformed},
		{"other domain", s, strings.Replace(plain, "fwd.example.net", "other.test", 1), "", ErrSRSDomain},
		{"not SRS", s, "alice@fwd.example.net", "", ErrNotSRS},
		{"SRS2 is not a tag", s, "SRS2=Jaaa=JL=example.org=alice@fwd.example.net", "", ErrNotSRS},
		{"no separator after the tag", s, "SRS0Jaaa=JL=example.org=alice@fwd.example.net", "", ErrNotSRS},
		{"no at sign", s, "SRS0=Jaaa=JL=example.org=alice", "", ErrNotSRS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.srs.Reverse(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Reverse(%q) = %q, %v; want error %v", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Reverse(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
	if !s.IsSRS(plain) || s.IsSRS("alice@example.org") || s.IsSRS("SRS0=x@other.test") {
		t.Error("IsSRS is wrong")
	}
}

func TestNewSRSErrors(t *testing.T) {
	for _, tt := range []struct {
		domain  string
		secrets []string
	}{
		{"", []string{testSecret}},
		{"a@b.test", []string{testSecret}},
		{"fwd.test", nil},
		{"fwd.test", []string{"short"}},
	} {
		if _, err := NewSRS(tt.domain, tt.secrets...); err == nil {
			t.Errorf("NewSRS(%q, %q) succeeded", tt.domain, tt.secrets)
		}
	}
}

// FuzzSRSReverse checks that Reverse never panics nor returns an address
// it could not have produced, and that Forward then Reverse gives the
// sender back.
func FuzzSRSReverse(f *testing.F) {
	for _, seed := range []string{
		"SRS0=Jaaa=JL=example.org=alice@fwd.example.net",
		"SRS1=Uv6a=fwd1.test==abcd=XY=example.com=bob@fwd.example.net",
		"SRS0+=====@fwd.example.net", "SRS1=@fwd.example.net", "srs0-a-b-c-d@FWD.example.net",
		"alice@example.org", "a=b@example.org", "SRS0=abcd=XY=example.com=bob@fwd1.test", "@", "",
	} {
		f.Add(seed)
	}
	s := newTestSRS(f, katDay)
	f.Fuzz(func(t *testing.T, in string) {
		out, err := s.Reverse(in)
		if err == nil {
			if _, _, ok := splitAddr(out); !ok {
				t.Fatalf("Reverse(%q) = %q, not an address", in, out)
			}
			if !s.IsSRS(in) {
				t.Fatalf("Reverse accepted %q, which IsSRS refuses", in)
			}
		}
		fw, err := s.Forward(in)
		if err != nil || fw == in || fw == "" {
			return
		}
		back, err := s.Reverse(fw)
		local, _, _ := splitAddr(in)
		switch {
		case srsTag(local) == "SRS1" && strings.HasPrefix(fw, "SRS1"):
			// Reversing gives the first hop's SRS0, not the input.
			if err != nil || !strings.HasPrefix(back, "SRS0") {
				t.Fatalf("Reverse(Forward(%q)) = %q, %v", in, back, err)
			}
		default:
			if srsTag(local) == "SRS0" {
				in = "SRS0" + in[4:] // the tag comes back upper-case
			}
			if err != nil || back != in {
				t.Fatalf("Reverse(Forward(%q)) = Reverse(%q) = %q, %v", in, fw, back, err)
			}
		}
	})
}

// TestSRSPostsrsd checks both directions against postsrsd, the reference
// SRS daemon for Postfix (built on libsrs2's code): its rewrites must
// equal ours, and each must reverse the other's.
func TestSRSPostsrsd(t *testing.T) {
	bin := "/usr/sbin/postsrsd"
	if _, err := os.Stat(bin); err != nil {
		bin = testenv.Require(t, "postsrsd", "apt-get install postsrsd")
	}
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fport, rport := freePort(t), freePort(t)
	cmd := exec.Command(bin, "-s"+secretFile, "-dfwd.example.net", "-l127.0.0.1", "-4",
		fmt.Sprintf("-f%d", fport), fmt.Sprintf("-r%d", rport))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	query := func(port int, key string) (string, bool) {
		t.Helper()
		var c net.Conn
		var err error
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if c, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("postsrsd: %v", err)
		}
		defer c.Close()
		// Postfix tcp_table: "get KEY", replies "200 VALUE"; both %-encoded.
		fmt.Fprintf(c, "get %s\n", tcpTableEncode(key))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("postsrsd: %v", err)
		}
		code, val, _ := strings.Cut(strings.TrimSpace(line), " ")
		v, err := url.PathUnescape(val)
		if err != nil {
			t.Fatalf("postsrsd reply %q: %v", line, err)
		}
		return v, code == "200"
	}

	s := newTestSRS(t, time.Now())
	addrs := []string{
		"alice@example.org", "Bob.Smith+tag@Example.COM", "a=b@example.org", "o'hara@example.ie",
		"user%host@example.org", "SRS0=abcd=XY=example.com=bob@fwd1.test", "SRS0-abcd=XY=example.com=bob@fwd1.test",
		"SRS1=abcd=fwd1.test==HHHH=XY=example.com=bob@fwd2.test", "x@fwd.example.net", "bounce-123@list.example.com",
	}
	for _, a := range addrs {
		ours, err := s.Forward(a)
		if err != nil {
			t.Fatal(err)
		}
		theirs, ok := query(fport, a)
		if !ok {
			theirs = a // not rewritten
		}
		if ours != theirs {
			t.Errorf("Forward(%q) = %q, postsrsd says %q", a, ours, theirs)
			continue
		}
		if ours == a {
			continue
		}
		want, err := s.Reverse(ours)
		if err != nil {
			t.Errorf("Reverse(%q): %v", ours, err)
		}
		if back, ok := query(rport, ours); !ok || back != want {
			t.Errorf("postsrsd reverses %q to %q (ok %v), we to %q", ours, back, ok, want)
		}
	}
	// postsrsd refuses what we refuse.
	plain, _ := s.Forward("alice@example.org")
	for _, bad := range []string{strings.Replace(plain, "alice", "mallory", 1), "SRS0=AAAA=AA=example.org=alice@fwd.example.net"} {
		if _, err := s.Reverse(bad); err == nil {
			t.Errorf("we reverse %q", bad)
		}
		if v, ok := query(rport, bad); ok {
			t.Errorf("postsrsd reverses %q to %q", bad, v)
		}
	}
}

var tcpTableSafe = regexp.MustCompile(`^[A-Za-z0-9@.=_+/-]$`)

func tcpTableEncode(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if tcpTableSafe.MatchString(string(c)) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
