package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Relay stands between an S3 server's bucket notifications and the
// pipeline's /dev/s3-events: the S3 server needs its webhook to answer
// when it starts, before the pipeline (which needs the S3 server) can, and
// the relay is where duplicate events are made.
//
// Like versitygw itself, the relay forwards each notification once, at
// once, and forgets it when the pipeline is down: the pipeline's restart
// scan must find what it missed. With probability DupProb it forwards a
// notification twice; Replay forwards an old one again.
type Relay struct {
	// Target is the pipeline's notification URL.
	Target string
	// DupProb is the chance a notification is forwarded twice.
	DupProb float64

	ln     net.Listener
	srv    *http.Server
	client *http.Client

	mu       sync.Mutex
	rng      *rand.Rand
	rawNotes [][]byte // notifications about raw/ objects, for Replay
	stats    RelayStats
	wg       sync.WaitGroup
}

// RelayStats counts what the relay did.
type RelayStats struct {
	Received   int // notifications from the S3 server
	Forwarded  int // successful POSTs to the pipeline, duplicates included
	Failed     int // POSTs that failed (pipeline down)
	Duplicates int // extra POSTs made on purpose
}

// NewRelay listens on loopback and forwards to target.
func NewRelay(target string, dupProb float64, seed uint64) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Relay{Target: target, DupProb: dupProb, ln: ln,
		client: &http.Client{Timeout: 3 * time.Second}, rng: rand.New(rand.NewPCG(seed, 7))}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

// URL is where the S3 server posts its notifications.
func (r *Relay) URL() string { return "http://" + r.ln.Addr().String() + "/s3-events" }

// Stats returns the counters.
func (r *Relay) Stats() RelayStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Close stops the relay and waits for forwards in flight.
func (r *Relay) Close() {
	r.srv.Close()
	r.wg.Wait()
}

func (r *Relay) handle(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
	raw := isRawNote(body)
	r.mu.Lock()
	r.stats.Received++
	if raw {
		r.rawNotes = append(r.rawNotes, body)
	}
	times := 1
	if raw && r.rng.Float64() < r.DupProb {
		times = 2
		r.stats.Duplicates++
	}
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for i := 0; i < times; i++ {
			r.forward(body)
		}
	}()
}

// Replay forwards a random earlier notification about a raw message
// again, as a duplicate storage event. It reports whether there was one.
func (r *Relay) Replay() bool {
	r.mu.Lock()
	if len(r.rawNotes) == 0 {
		r.mu.Unlock()
		return false
	}
	body := r.rawNotes[r.rng.IntN(len(r.rawNotes))]
	r.stats.Duplicates++
	r.mu.Unlock()
	r.forward(body)
	return true
}

func (r *Relay) forward(body []byte) {
	resp, err := r.client.Post(r.Target, "application/json", bytes.NewReader(body))
	ok := err == nil && resp.StatusCode == http.StatusOK
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	r.mu.Lock()
	if ok {
		r.stats.Forwarded++
	} else {
		r.stats.Failed++
	}
	r.mu.Unlock()
}

// isRawNote reports whether a notification names an object under raw/.
func isRawNote(body []byte) bool {
	var ev struct {
		Records []struct {
			S3 struct {
				Object struct {
					Key string `json:"key"`
				} `json:"object"`
			} `json:"s3"`
		} `json:"Records"`
	}
	if json.Unmarshal(body, &ev) != nil {
		return false
	}
	for _, rec := range ev.Records {
		k := rec.S3.Object.Key
		if strings.HasPrefix(k, "raw/") || strings.Contains(k, "/raw/") {
			return true
		}
	}
	return false
}
