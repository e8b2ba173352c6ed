// Package eachlooptest helps test code that uses package eachloop: [API]
// plays the each::labs API and its webhook sender on an httptest server,
// and [Clock] is a fake clock for eachloop.WithClock that moves only when
// the test says, so grace periods and poll waits take no real time.
package eachlooptest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/eachlabs"
)

// Guard bounds every wait of a Clock for the reconciler, so that a bug
// fails the test instead of hanging it.
const Guard = 10 * time.Second

// Clock is a fake clock for one reconciler (eachloop.Loop.Run): its
// Sleep blocks until the test calls [Clock.Step], which moves the time to
// the end of that sleep. The reconciler must be its only sleeper.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	until  time.Time
	wake   chan struct{}
	asleep chan struct{}
}

// NewClock returns a Clock that reads start.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start, asleep: make(chan struct{}, 1)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep waits until a Step ends the sleep, or ctx ends.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	ch := make(chan struct{})
	c.mu.Lock()
	c.until, c.wake = c.now.Add(d), ch
	c.mu.Unlock()
	select {
	case c.asleep <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Step waits until the reconciler sleeps, ends the sleep by moving the
// time to its end, and returns the new time. When the reconciler returns
// from Step's wake-up it has finished everything due before.
func (c *Clock) Step(tb testing.TB) time.Time {
	tb.Helper()
	select {
	case <-c.asleep:
	case <-time.After(Guard):
		tb.Fatal("eachlooptest: the reconciler never went to sleep")
	}
	return c.wakeUp()
}

func (c *Clock) wakeUp() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.until
	close(c.wake)
	return c.now
}

// StepUntil steps until the time is at least at.
func (c *Clock) StepUntil(tb testing.TB, at time.Time) {
	tb.Helper()
	for c.Now().Before(at) {
		c.Step(tb)
	}
}

// StepUntilReceive steps until ch yields a value, and returns it.
//
// It steps whenever the reconciler sleeps, so when the value comes from
// another goroutine (a Handler's worker running a callback) the clock
// keeps moving, a scan interval per wake-up, until it arrives: hours of
// fake time can pass in a few milliseconds. A test that then depends on
// how much time has passed (a retention, a horizon) should step only
// until the reconciler has done what produces the value (such as the
// poll, see [API.Gets]) and then wait for the value without stepping.
func StepUntilReceive[T any](tb testing.TB, c *Clock, ch <-chan T) T {
	tb.Helper()
	for {
		select {
		case v := <-ch:
			return v
		case <-c.asleep:
			c.wakeUp()
		case <-time.After(Guard):
			tb.Fatal("eachlooptest: nothing received and the reconciler does not sleep")
		}
	}
}

// Answer is one scripted answer of [API] to GET /v1/prediction/{id}.
type Answer struct {
	Status int
	Header http.Header
	Body   string
}

// OK returns a 200 answer with body.
func OK(body string) Answer { return Answer{Status: http.StatusOK, Body: body} }

// Success returns the answer for prediction id that succeeded with the
// image URL eachhooktest.SeedOutput.
func Success(id string) Answer {
	return OK(fmt.Sprintf(`{"id": %q, "input": {"prompt": "a lighthouse"}, "status": "success",
		"output": %q, "logs": null, "metrics": {"predict_time": 12.5, "cost": 0.05},
		"urls": {"cancel": "https://api.eachlabs.ai/v1/prediction/%s/cancel", "get": "https://api.eachlabs.ai/v1/prediction/%s"}}`,
		id, eachhooktest.SeedOutput, id, id))
}

// API plays the each::labs API as an [http.Handler]: POST /v1/prediction
// creates predictions "pred-1", "pred-2"… (ids of its own, or with the
// prefix of [API.SetPrefix]); GET /v1/prediction/{id} answers from a
// script ([API.Script]), "processing" by default. Requests need a bearer
// token. Its Deliver method plays the webhook sender.
type API struct {
	now func() time.Time

	mu       sync.Mutex
	prefix   string
	n        int
	refuse   bool
	requests map[string]eachlabs.PredictionRequest
	script   map[string][]Answer
	gets     map[string][]time.Time
	onCreate func(id string, req eachlabs.PredictionRequest)
	onGet    func(id string)
	sender   http.Client
}

// NewAPI returns an API that stamps the GETs it receives with now.
func NewAPI(now func() time.Time) *API {
	return &API{
		now: now, prefix: "pred-",
		requests: map[string]eachlabs.PredictionRequest{},
		script:   map[string][]Answer{},
		gets:     map[string][]time.Time{},
		sender:   http.Client{Transport: &http.Transport{}, Timeout: Guard},
	}
}

// SetPrefix sets the prefix of the ids of predictions created from now on.
func (a *API) SetPrefix(p string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.prefix, a.n = p, 0
}

// Refuse makes the API answer 400 to creations (refuse true) or not.
func (a *API) Refuse(refuse bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refuse = refuse
}

// OnCreate sets a function called after a prediction is created and
// before the creation is answered.
func (a *API) OnCreate(fn func(id string, req eachlabs.PredictionRequest)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.onCreate = fn
}

// OnGet sets a function called when a GET of a prediction arrives, before
// it is answered; it may block to hold the poll in flight.
func (a *API) OnGet(fn func(id string)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.onGet = fn
}

// Script sets the answers to the coming GETs of id, in order; the last
// repeats.
func (a *API) Script(id string, answers ...Answer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.script[id] = answers
}

// Gets returns when each GET of id arrived, by the API's clock.
func (a *API) Gets(id string) []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.gets[id]...)
}

// Request returns the creation request of id (zero if unknown).
func (a *API) Request(id string) eachlabs.PredictionRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests[id]
}

// Deliver plays the sender: it posts body to the webhook URL prediction id
// was created with, signed with secret (the body-only scheme), and returns
// the answer's status code.
func (a *API) Deliver(ctx context.Context, id, secret string, body []byte) (int, error) {
	req, err := eachhooktest.NewClientRequest(a.Request(id).WebhookURL, secret, body, eachhooktest.BodyScheme, time.Now())
	if err != nil {
		return 0, err
	}
	resp, err := a.sender.Do(req.WithContext(ctx))
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Close closes the sender's idle connections.
func (a *API) Close() { a.sender.CloseIdleConnections() }

// ServeHTTP implements [http.Handler].
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error": "Unauthorized"}`)
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/prediction":
		a.create(w, r)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/prediction/"):
		a.get(w, strings.TrimPrefix(r.URL.Path, "/v1/prediction/"))
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error": "not found"}`)
	}
}

func (a *API) create(w http.ResponseWriter, r *http.Request) {
	var req eachlabs.PredictionRequest
	err := json.NewDecoder(r.Body).Decode(&req)
	a.mu.Lock()
	if err != nil || a.refuse {
		a.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error": "Invalid input"}`)
		return
	}
	a.n++
	id := fmt.Sprint(a.prefix, a.n)
	a.requests[id] = req
	onCreate := a.onCreate
	a.mu.Unlock()
	if onCreate != nil {
		onCreate(id, req)
	}
	fmt.Fprintf(w, `{"status": "success", "message": "Prediction created successfully", "predictionID": %q}`, id)
}

func (a *API) get(w http.ResponseWriter, id string) {
	a.mu.Lock()
	a.gets[id] = append(a.gets[id], a.now())
	onGet := a.onGet
	a.mu.Unlock()
	if onGet != nil {
		onGet(id)
	}
	a.mu.Lock()
	ans := OK(fmt.Sprintf(`{"id": %q, "status": "processing", "output": null}`, id))
	if s := a.script[id]; len(s) > 0 {
		ans = s[0]
		if len(s) > 1 {
			a.script[id] = s[1:]
		}
	}
	a.mu.Unlock()
	for k, v := range ans.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(ans.Status)
	fmt.Fprint(w, ans.Body)
}
