package bench

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/signature"
)

// Path is where every receiver in this package listens.
const Path = "/webhooks/prediction"

// ReceiverConfig configures the eachhook receiver of the load tests.
type ReceiverConfig struct {
	Secret string
	// Sleep is how long every callback sleeps, to stand for slow work.
	Sleep time.Duration
	// Workers and QueueSize are passed to eachhook.WithWorkers and
	// eachhook.WithQueueSize when positive.
	Workers, QueueSize int
	// TrackIDs makes the receiver remember every id its callback saw, so
	// that Stats can tell the distinct ids and the most runs of one id.
	TrackIDs bool
}

// Stats counts what a receiver's callbacks did.
type Stats struct {
	Callbacks int64 `json:"callbacks"`
	// Distinct and MaxPerID are set only with ReceiverConfig.TrackIDs.
	Distinct int `json:"distinct"`
	MaxPerID int `json:"max_per_id"`
}

// Receiver is the example receiver of the README: an eachhook Handler
// behind a ServeMux, with a callback that counts the predictions it saw.
type Receiver struct {
	http.Handler
	hook      *eachhook.Handler
	callbacks atomic.Int64

	mu  sync.Mutex
	ids map[string]int
}

// NewReceiver builds the example receiver.
func NewReceiver(cfg ReceiverConfig) (*Receiver, error) {
	opts := []eachhook.Option{
		eachhook.WithSecret(cfg.Secret),
		eachhook.WithLogger(slog.New(slog.DiscardHandler)),
	}
	if cfg.Workers > 0 {
		opts = append(opts, eachhook.WithWorkers(cfg.Workers))
	}
	if cfg.QueueSize > 0 {
		opts = append(opts, eachhook.WithQueueSize(cfg.QueueSize))
	}
	h, err := eachhook.New(opts...)
	if err != nil {
		return nil, err
	}
	r := &Receiver{hook: h}
	if cfg.TrackIDs {
		r.ids = make(map[string]int)
	}
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		if cfg.Sleep > 0 {
			time.Sleep(cfg.Sleep)
		}
		r.callbacks.Add(1)
		if r.ids != nil {
			r.mu.Lock()
			r.ids[s.ID]++
			r.mu.Unlock()
		}
		return nil
	})
	mux := http.NewServeMux()
	mux.Handle("POST "+Path, h)
	r.Handler = mux
	return r, nil
}

// Shutdown drains the callbacks (see eachhook.Handler.Shutdown) and
// returns what they did.
func (r *Receiver) Shutdown(ctx context.Context) (Stats, error) {
	err := r.hook.Shutdown(ctx)
	st := Stats{Callbacks: r.callbacks.Load()}
	if r.ids != nil {
		r.mu.Lock()
		st.Distinct = len(r.ids)
		for _, n := range r.ids {
			st.MaxPerID = max(st.MaxPerID, n)
		}
		r.mu.Unlock()
	}
	return st, err
}

// Bare is the least a receiver can do: read the body and answer 200.
func Bare() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}

// HandWritten is the receiver the spec's FastAPI example suggests, written
// in Go the obvious way: read the body, check the HMAC of the body against
// X-Webhook-Signature, decode the JSON into a map, hand it to callback on a
// new goroutine and answer 200. It does no deduplication.
func HandWritten(secret string, callback func(payload map[string]any)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		expected := hex.EncodeToString(mac.Sum(nil))
		if !hmac.Equal([]byte(expected), []byte(r.Header.Get(signature.Header))) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		var payload map[string]any
		if err := json.Unmarshal(body, &payload); err != nil {
			http.Error(w, "malformed payload", http.StatusBadRequest)
			return
		}
		go callback(payload)
		w.WriteHeader(http.StatusOK)
	})
}
