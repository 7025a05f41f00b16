package scan

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/letterboxmail/letterbox/message"
)

// DefaultTimeout is a scanner's deadline when none is configured.
const DefaultTimeout = 30 * time.Second

// Verdict values of message.Virus.Result.
const (
	Clean    = "clean"
	Infected = "infected"
	Error    = "error"
)

// ErrTooLarge is returned by a scanner when the message is over its size
// limit: the message was not scanned.
var ErrTooLarge = errors.New("message larger than the scanner's size limit")

// errStalled ends a scanner that did not take a block of data in time.
var errStalled = errors.New("scanner did not read the message data before its deadline")

// Envelope is what the scanners are told about the SMTP transaction.
type Envelope struct {
	From    string
	Rcpts   []string
	IP      string
	Helo    string
	QueueID string
	// User is the authenticated user, if any.
	User string
}

// SpamScanner returns a spam verdict for a message it reads from body.
// It must read body until EOF or an error, or return.
type SpamScanner interface {
	CheckSpam(ctx context.Context, env Envelope, body io.Reader) (*message.Spam, error)
}

// VirusScanner returns a virus verdict for a message it reads from body.
type VirusScanner interface {
	ScanVirus(ctx context.Context, body io.Reader) (*message.Virus, error)
}

// Scanners is the set of scanners a message goes through; a nil field is
// a scanner not configured.
type Scanners struct {
	Spam  SpamScanner
	Virus VirusScanner
	// Timeout is each scanner's deadline (DefaultTimeout when zero).
	Timeout time.Duration
}

// Enabled reports whether any scanner is configured.
func (s *Scanners) Enabled() bool { return s != nil && (s.Spam != nil || s.Virus != nil) }

// Result holds the verdicts of one message. A verdict is never nil for a
// configured scanner: a failed scan has Action (spam) or Result (virus)
// "error", and its error in SpamErr or VirusErr.
type Result struct {
	Spam     *message.Spam
	Virus    *message.Virus
	SpamErr  error
	VirusErr error
}

// Tee is an io.Reader that passes src through to its reader (the store)
// and, block by block, to every scanner.
type Tee struct {
	src   io.Reader
	feeds []*feed
	wg    sync.WaitGroup
	res   Result
	once  sync.Once
	ended bool
}

// feed is one scanner's pipe.
type feed struct {
	pw      *io.PipeWriter
	pr      *io.PipeReader
	timeout time.Duration
	stall   *time.Timer
	dead    bool
	cancel  context.CancelFunc
	// deadline starts the scanner's verdict deadline when the data ends.
	deadline func()
}

// Tee starts the scanners on the message that src will deliver. The caller
// reads the Tee to its end (or an error), then calls Wait. ctx bounds the
// scanners as a whole (the gateway's hard stop).
func (s *Scanners) Tee(ctx context.Context, env Envelope, src io.Reader) *Tee {
	t := &Tee{src: src}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	start := func(run func(ctx context.Context, r io.Reader)) {
		pr, pw := io.Pipe()
		sctx, cancel := context.WithCancel(ctx)
		f := &feed{pw: pw, pr: pr, timeout: timeout, cancel: cancel}
		var timer *time.Timer
		var mu sync.Mutex
		f.deadline = func() {
			mu.Lock()
			defer mu.Unlock()
			if timer == nil {
				timer = time.AfterFunc(timeout, func() {
					pr.CloseWithError(context.DeadlineExceeded)
					cancel()
				})
			}
		}
		t.feeds = append(t.feeds, f)
		t.wg.Go(func() {
			defer cancel()
			defer func() {
				mu.Lock()
				if timer != nil {
					timer.Stop()
				}
				mu.Unlock()
			}()
			run(sctx, pr)
			// Whatever the scanner left unread is not its business: a
			// write to a finished scanner must not block the store.
			pr.CloseWithError(errScannerDone)
		})
	}
	if s.Spam != nil {
		start(func(ctx context.Context, r io.Reader) {
			v, err := s.Spam.CheckSpam(ctx, env, r)
			if err != nil {
				v = &message.Spam{Action: Error, Error: scanError(ctx, err).Error()}
				err = scanError(ctx, err)
			}
			t.res.Spam, t.res.SpamErr = v, err
		})
	}
	if s.Virus != nil {
		start(func(ctx context.Context, r io.Reader) {
			v, err := s.Virus.ScanVirus(ctx, r)
			if err != nil {
				v = &message.Virus{Result: Error, Error: scanError(ctx, err).Error()}
				err = scanError(ctx, err)
			}
			t.res.Virus, t.res.VirusErr = v, err
		})
	}
	return t
}

var errScannerDone = errors.New("scanner finished")

// scanError names a missed deadline as such, whatever error the scanner's
// transport made of it.
func scanError(ctx context.Context, err error) error {
	if errors.Is(err, ErrTooLarge) {
		return err
	}
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errStalled) {
		if errors.Is(err, errStalled) {
			return errStalled
		}
		return ErrTimeout
	}
	return err
}

// ErrTimeout is a scanner's missed deadline.
var ErrTimeout = errors.New("scanner timed out")

// Read reads from src and hands what it read to every scanner still
// scanning before returning it.
func (t *Tee) Read(p []byte) (int, error) {
	n, err := t.src.Read(p)
	if n > 0 {
		for _, f := range t.feeds {
			f.write(p[:n])
		}
	}
	switch {
	case err == io.EOF:
		t.end(nil)
	case err != nil:
		t.end(err)
	}
	return n, err
}

func (f *feed) write(b []byte) {
	if f.dead {
		return
	}
	if f.stall == nil {
		f.stall = time.AfterFunc(f.timeout, func() { f.pr.CloseWithError(errStalled); f.cancel() })
	} else {
		f.stall.Reset(f.timeout)
	}
	_, err := f.pw.Write(b)
	f.stall.Stop()
	if err != nil {
		f.dead = true
	}
}

// end closes the scanners' pipes: at the end of the data (err nil) each
// scanner's verdict deadline starts; after a read error they are stopped.
func (t *Tee) end(err error) {
	t.once.Do(func() {
		t.ended = true
		for _, f := range t.feeds {
			if f.stall != nil {
				f.stall.Stop()
			}
			if err != nil {
				f.pw.CloseWithError(err)
				f.cancel()
				continue
			}
			f.deadline()
			f.pw.Close()
		}
	})
}

// Wait returns the verdicts once every scanner has answered or failed. Read
// must have returned an error (io.EOF at the end of the data) first;
// otherwise the scanners are stopped and their verdicts are errors.
func (t *Tee) Wait() Result {
	if !t.ended {
		t.end(errors.New("message data incomplete"))
	}
	t.wg.Wait()
	return t.res
}
