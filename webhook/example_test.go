package webhook_test

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/webhook"
)

// A receiver verifies each request and de-duplicates on its webhook-id.
func ExampleVerifier_ReadEvent() {
	v, err := webhook.NewVerifier(os.Getenv("LETTERBOX_WEBHOOK_SECRET"))
	if err != nil {
		panic(err)
	}
	http.HandleFunc("/inbound", func(w http.ResponseWriter, r *http.Request) {
		id, ev, err := v.ReadEvent(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		fmt.Println(id, ev.Data.Subject) // store id to skip redeliveries
		w.WriteHeader(http.StatusNoContent)
	})
}

// Signing is what letterbox does for every attempt.
func ExampleSecret_Sign() {
	k, _ := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	sig := k.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	fmt.Println(strings.HasPrefix(sig, "v1,"), sig)
	// Output: true v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}
