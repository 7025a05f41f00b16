package scan

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/message"
)

// Clamd scans with ClamAV's daemon over INSTREAM (clamd(8)): the message
// goes in chunks, each prefixed with its length as a 4-byte big-endian
// integer, and a zero-length chunk ends it. clamd answers "stream: OK",
// "stream: NAME FOUND", or, past its StreamMaxLength, "INSTREAM size limit
// exceeded. ERROR" (reported as ErrTooLarge).
type Clamd struct {
	// Network and Address are where clamd listens: "tcp" and HOST:PORT,
	// or "unix" and a socket path.
	Network, Address string
	// ChunkSize is the largest chunk sent (default 64 KiB).
	ChunkSize int
}

// NewClamd reads tcp://HOST:PORT or unix:///PATH.
func NewClamd(addr string) (*Clamd, error) {
	bad := fmt.Errorf("clamd %q: want tcp://HOST:PORT or unix:///PATH", addr)
	u, err := url.Parse(addr)
	if err != nil {
		return nil, bad
	}
	switch u.Scheme {
	case "tcp":
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" || u.Path != "" {
			return nil, bad
		}
		return &Clamd{Network: "tcp", Address: u.Host}, nil
	case "unix":
		if u.Host != "" || u.Path == "" {
			return nil, bad
		}
		return &Clamd{Network: "unix", Address: u.Path}, nil
	}
	return nil, bad
}

// Ping sends PING and expects PONG: a readiness check.
func (c *Clamd) Ping(ctx context.Context) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return err
	}
	rep, err := bufio.NewReader(conn).ReadString(0)
	if err != nil {
		return err
	}
	if strings.TrimRight(rep, "\x00") != "PONG" {
		return fmt.Errorf("clamd: PING answered %q", rep)
	}
	return nil
}

func (c *Clamd) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, c.Network, c.Address)
	if err != nil {
		return nil, fmt.Errorf("clamd: %w", err)
	}
	// The context's end (deadline or cancel) interrupts any read or write.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	return &ctxConn{Conn: conn, stop: stop}, nil
}

type ctxConn struct {
	net.Conn
	stop func() bool
}

func (c *ctxConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// ScanVirus implements VirusScanner.
func (c *Clamd) ScanVirus(ctx context.Context, body io.Reader) (*message.Virus, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	size := c.ChunkSize
	if size <= 0 {
		size = 64 << 10
	}
	buf := make([]byte, 4+size)
	w := bufio.NewWriterSize(conn, 4+size)
	reply := func() (string, error) {
		_ = w.Flush()
		rep, err := bufio.NewReader(conn).ReadString(0)
		if err != nil && rep == "" {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return "", fmt.Errorf("clamd: read reply: %w", err)
		}
		return strings.TrimSpace(strings.TrimRight(rep, "\x00")), nil
	}
	if _, err := w.WriteString("zINSTREAM\x00"); err != nil {
		return nil, fmt.Errorf("clamd: %w", err)
	}
	for {
		n, rerr := body.Read(buf[4:])
		if n > 0 {
			binary.BigEndian.PutUint32(buf[:4], uint32(n))
			if _, err := w.Write(buf[:4+n]); err != nil {
				// clamd may have answered (its size limit) and closed.
				if rep, rerr := reply(); rerr == nil && rep != "" {
					return c.verdict(rep)
				}
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, fmt.Errorf("clamd: send: %w", err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, rerr
		}
	}
	if _, err := w.Write([]byte{0, 0, 0, 0}); err != nil {
		return nil, fmt.Errorf("clamd: %w", err)
	}
	if err := w.Flush(); err != nil {
		if rep, rerr := reply(); rerr == nil && rep != "" {
			return c.verdict(rep)
		}
		return nil, fmt.Errorf("clamd: send: %w", err)
	}
	rep, err := reply()
	if err != nil {
		return nil, err
	}
	return c.verdict(rep)
}

// verdict reads clamd's one-line answer.
func (c *Clamd) verdict(rep string) (*message.Virus, error) {
	switch {
	case strings.HasPrefix(rep, "INSTREAM size limit exceeded"):
		return nil, ErrTooLarge
	case strings.HasSuffix(rep, " OK"):
		return &message.Virus{Result: Clean, Scanner: "clamd"}, nil
	case strings.HasSuffix(rep, " FOUND"):
		sig := strings.TrimSuffix(rep, " FOUND")
		if _, after, ok := strings.Cut(sig, ": "); ok {
			sig = after
		}
		return &message.Virus{Result: Infected, Signatures: []string{sig}, Scanner: "clamd"}, nil
	case strings.HasSuffix(rep, " ERROR"):
		return nil, errors.New("clamd: " + rep)
	}
	return nil, fmt.Errorf("clamd: unexpected reply %q", rep)
}
