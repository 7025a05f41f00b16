package smtpgw

import (
	"bufio"
	"io"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// dataBackend is a go-smtp backend whose Data hands go-smtp's DATA reader,
// and the connection, to a test function.
type dataBackend struct {
	data func(r io.Reader, c net.Conn) error
}

func (b dataBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &dataSession{b: b, c: c}, nil
}

type dataSession struct {
	b dataBackend
	c *smtp.Conn
}

func (s *dataSession) Reset()                               {}
func (s *dataSession) Logout() error                        { return nil }
func (s *dataSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *dataSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *dataSession) Data(r io.Reader) error               { return s.b.data(r, s.c.Conn()) }

// TestTakeOverDATA checks the reflect/unsafe takeover of go-smtp's DATA
// reader (takeOverDATA) directly, against the go-smtp of go.mod serving a
// real connection: the reader Data gets is go-smtp's dataReader with the
// fields the takeover reads, newBodyReader (what Session.Data uses) reads
// through our dotReader, and the finish function leaves go-smtp's reader
// at its end-of-data state, so go-smtp reads nothing of the next command.
// It fails the moment a go-smtp upgrade renames, retypes or renumbers any
// of these, even if the smuggling tests still pass through the weaker
// fallback.
func TestTakeOverDATA(t *testing.T) {
	const (
		wire = "Subject: takeover\r\n\r\n..stuffed\r\nend\r\n.\r\n"
		want = "Subject: takeover\r\n\r\n.stuffed\r\nend\r\n"
	)
	checked := make(chan struct{})
	be := dataBackend{data: func(r io.Reader, c net.Conn) error {
		defer close(checked)
		v := reflect.ValueOf(r)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
			t.Errorf("go-smtp's DATA reader is a %T, not a pointer to a struct", r)
			return nil
		}
		e := v.Elem()
		if typ := e.Type(); typ.PkgPath() != "github.com/emersion/go-smtp" || typ.Name() != "dataReader" {
			t.Errorf("go-smtp's DATA reader is %s.%s, want github.com/emersion/go-smtp.dataReader", typ.PkgPath(), typ.Name())
		}
		if f := e.FieldByName("r"); !f.IsValid() || f.Type() != reflect.TypeFor[*bufio.Reader]() {
			t.Errorf("dataReader has no field r *bufio.Reader (%v)", f)
		}
		if f := e.FieldByName("state"); !f.IsValid() || f.Kind() != reflect.Int || f.Int() != 0 {
			t.Errorf("dataReader has no field state int starting at 0 (%v)", f)
		}

		body := newBodyReader(r, c, time.Minute, 1<<20)
		if body.dot == nil || body.release == nil || body.bdat {
			t.Error("takeOverDATA did not take go-smtp's DATA reader over: the gateway would fall back to checking what go-smtp passes on")
			return nil
		}
		got, err := io.ReadAll(body)
		if err != nil || string(got) != want {
			t.Errorf("read %q, %v; want %q", got, err, want)
		}
		body.done()
		// go-smtp's reader must now be at its stateEOF: a read returns
		// io.EOF at once. With a wrong state constant it would read the
		// NOOP the client pipelined after the data.
		var one [1]byte
		if n, err := r.Read(one[:]); n != 0 || err != io.EOF {
			t.Errorf("go-smtp's reader after finish: Read = %d %q, %v; want 0, EOF (goSMTPStateEOF is not its stateEOF)", n, one[:n], err)
		}
		return nil
	}}
	srv := smtp.NewServer(be)
	srv.Domain = "mx.test"
	srv.ReadTimeout, srv.WriteTimeout = safety, safety
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-served })

	c := dialRaw(t, ln.Addr().String())
	c.hello("client.test")
	c.cmd("MAIL FROM:<s@remote.test>", 250, "")
	c.cmd("RCPT TO:<a@example.test>", 250, "")
	c.cmd("DATA", 354, "")
	c.send(wire + "NOOP\r\n")
	c.expect(250, "")
	<-checked
	// go-smtp's own discard after Data read nothing: NOOP is answered.
	c.expect(250, "")
	c.cmd("QUIT", 221, "")
}
