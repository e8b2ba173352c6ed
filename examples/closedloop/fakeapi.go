package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/eachhook/eachhook/signature"
)

// fakeAPI plays https://api.eachlabs.ai for the example: every prediction
// succeeds at once with an image URL. It delivers the webhook of a
// prediction whose prompt does not contain "lost", signed with the
// prediction's own webhook_secret, as the real sender does; the webhook of
// the others is lost, so that only polling can learn their outcome.
type fakeAPI struct {
	sender *http.Client
	wg     sync.WaitGroup // webhook deliveries in progress

	mu    sync.Mutex
	n     int
	preds map[string]bool // id -> its outcome is known to GET
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{sender: &http.Client{Timeout: 10 * time.Second}, preds: map[string]bool{}}
}

func (a *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/prediction":
		var req struct {
			Model         string         `json:"model"`
			Input         map[string]any `json:"input"`
			WebhookURL    string         `json:"webhook_url"`
			WebhookSecret string         `json:"webhook_secret"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error": "Invalid input"}`)
			return
		}
		a.mu.Lock()
		a.n++
		id := fmt.Sprintf("pred-%d", a.n)
		lost := strings.Contains(fmt.Sprint(req.Input["prompt"]), "lost")
		a.preds[id] = lost // the poll sees a delivered prediction's outcome once it is sent
		a.mu.Unlock()
		if !lost {
			a.wg.Go(func() { a.deliver(id, req.WebhookURL, req.WebhookSecret) })
		}
		fmt.Fprintf(w, `{"status": "success", "message": "Prediction created successfully", "predictionID": %q}`, id)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/prediction/"):
		id := strings.TrimPrefix(r.URL.Path, "/v1/prediction/")
		a.mu.Lock()
		done, ok := a.preds[id]
		a.mu.Unlock()
		switch {
		case !ok:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error": "Prediction not found"}`)
		case !done:
			fmt.Fprintf(w, `{"id": %q, "status": "processing"}`, id)
		default:
			w.Write(outcome(id))
		}
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error": "not found"}`)
	}
}

func outcome(id string) []byte {
	return fmt.Appendf(nil, `{"id": %q, "status": "success", "output": "https://storage.example.com/%s.png",
		"metrics": {"predict_time": 2.5, "cost": 0.01}}`, id, id)
}

// deliver sends the webhook of id, signed with its secret, retrying a few
// times as the sender does.
func (a *fakeAPI) deliver(id, url, secret string) {
	body := outcome(id)
	for range 3 {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(signature.Header, signature.Sign(secret, "", body))
		resp, err := a.sender.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	a.mu.Lock()
	a.preds[id] = true
	a.mu.Unlock()
}

// Close waits for the deliveries in progress.
func (a *fakeAPI) Close() {
	a.wg.Wait()
	a.sender.CloseIdleConnections()
}
