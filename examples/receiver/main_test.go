package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/webhook"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func request(t *testing.T, id, body string, key webhook.Secret) *http.Request {
	now := time.Now()
	r := httptest.NewRequest(http.MethodPost, "/inbound", bytes.NewBufferString(body))
	r.Header.Set(webhook.HeaderID, id)
	r.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	r.Header.Set(webhook.HeaderSignature, key.Sign(id, now, []byte(body)))
	return r
}

func TestReceiverVerifiesAndDeduplicates(t *testing.T) {
	v, _ := webhook.NewVerifier(secret)
	var got []string
	h := &handler{v: v, seen: map[string]bool{}, handle: func(id string, ev *webhook.Event) { got = append(got, id+" "+ev.Data.Subject) }}
	key, _ := webhook.ParseSecret(secret)
	body := `{"type":"message.received","timestamp":"2026-11-22T12:00:00Z","data":{"id":"01JK","subject":"hello"}}`
	for i := 0; i < 2; i++ { // a retry of the same delivery
		w := httptest.NewRecorder()
		h.ServeHTTP(w, request(t, "01JK.support.0", body, key))
		if w.Code != 204 {
			t.Fatalf("status %d", w.Code)
		}
	}
	wrong, _ := webhook.ParseSecret("whsec_d3Jvbmc=")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, request(t, "01JL.support.0", body, wrong))
	if w.Code != 401 {
		t.Fatalf("wrong secret: status %d", w.Code)
	}
	if len(got) != 1 || got[0] != "01JK.support.0 hello" {
		t.Fatalf("handled %v, want one message", got)
	}
}
