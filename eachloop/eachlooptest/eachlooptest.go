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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/eachloop/eachlabs"
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

// StepUntilReceive steps until ch yields a value, and returns it. It
// steps only while ch is empty: a value that is ready when the reconciler
// sleeps is returned first, and the reconciler stays asleep until the
// next Step.
//
// StepUntilReceive knows only the reconciler. A value sent by another
// goroutine, such as a Handler's callback that runs on the Handler's
// workers after the reconciler dispatched it, may come after the
// reconciler has gone to sleep: StepUntilReceive then steps again, and
// the time moves past the one the value was due at. To wait for what the
// reconciler dispatches without moving the time, receive from ch
// directly.
func StepUntilReceive[T any](tb testing.TB, c *Clock, ch <-chan T) T {
	tb.Helper()
	for {
		// Go's select picks at random among ready cases: look at ch alone
		// first, so that a value already sent is never passed over for a
		// step.
		select {
		case v := <-ch:
			return v
		default:
		}
		select {
		case v := <-ch:
			return v
		case <-c.asleep:
			select {
			case v := <-ch:
				// Sent as the reconciler went to sleep. It sleeps on: give the
				// sleep back to the next Step (the only sleeper sent the one
				// token the buffer holds, so this cannot block).
				c.asleep <- struct{}{}
				return v
			default:
			}
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
// script ([API.Script]), "processing" by default; GET /v1/executions,
// once [API.ServeExecutions] turned it on, lists the created predictions
// as the next GET of each would answer them. Requests need a bearer
// token. Its Deliver method plays the webhook sender.
type API struct {
	now func() time.Time

	mu       sync.Mutex
	prefix   string
	n        int
	refuse   int // status of refused creations; 0 accepts them
	refusal  string
	posts    int
	requests map[string]eachlabs.PredictionRequest
	order    []string // created ids, oldest first
	created  map[string]time.Time
	script   map[string][]Answer
	gets     map[string][]time.Time
	nGets    int
	lists    []string
	listing  bool
	capTotal int
	onCreate func(id string, req eachlabs.PredictionRequest)
	onGet    func(id string)
	sender   http.Client
}

// NewAPI returns an API that stamps the GETs it receives with now.
func NewAPI(now func() time.Time) *API {
	return &API{
		now: now, prefix: "pred-",
		requests: map[string]eachlabs.PredictionRequest{},
		created:  map[string]time.Time{},
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
	if refuse {
		a.RefuseWith(http.StatusBadRequest, `{"error": "Invalid input"}`)
	} else {
		a.RefuseWith(0, "")
	}
}

// RefuseWith makes the API answer creations with status and body, such as
// 402 for the balance or 429 for the concurrency cap; status 0 accepts
// them again.
func (a *API) RefuseWith(status int, body string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refuse, a.refusal = status, body
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

// ServeExecutions makes the API answer GET /v1/executions (on) or 404,
// as an API without the list does (off, the default).
func (a *API) ServeExecutions(on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.listing = on
}

// CapTotal makes GET /v1/executions report a total_count of at most n,
// with total_capped true when it cuts; 0 reports the exact count.
func (a *API) CapTotal(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.capTotal = n
}

// ExecutionLists returns the query of each GET /v1/executions, in order.
func (a *API) ExecutionLists() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.lists...)
}

// CreateRequests returns how many creation requests arrived, refused or
// not.
func (a *API) CreateRequests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.posts
}

// GetCount returns how many GETs of predictions arrived, of any id.
func (a *API) GetCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nGets
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
	case r.Method == http.MethodGet && r.URL.Path == "/v1/executions":
		a.list(w, r)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error": "not found"}`)
	}
}

func (a *API) create(w http.ResponseWriter, r *http.Request) {
	var req eachlabs.PredictionRequest
	err := json.NewDecoder(r.Body).Decode(&req)
	a.mu.Lock()
	a.posts++
	if err != nil || a.refuse != 0 {
		code, body := a.refuse, a.refusal
		a.mu.Unlock()
		if err != nil {
			code, body = http.StatusBadRequest, `{"error": "Invalid input"}`
		}
		w.WriteHeader(code)
		fmt.Fprint(w, body)
		return
	}
	a.n++
	id := fmt.Sprint(a.prefix, a.n)
	a.requests[id] = req
	a.order = append(a.order, id)
	a.created[id] = a.now()
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
	a.nGets++
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

// list answers GET /v1/executions: the created predictions, newest first,
// whose next GET would answer 200 with the status asked for ("error" also
// keeps "failed"), created within from and to, a page of limit (default
// 50, at most 100) from offset.
func (a *API) list(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lists = append(a.lists, r.URL.RawQuery)
	if !a.listing {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error": "not found"}`)
		return
	}
	q := r.URL.Query()
	limit, offset := 50, 0
	if v := q.Get("limit"); v != "" {
		limit, _ = strconv.Atoi(v)
	}
	if v := q.Get("offset"); v != "" {
		offset, _ = strconv.Atoi(v)
	}
	if limit < 1 || limit > 100 || offset < 0 {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error": "invalid limit or offset"}`)
		return
	}
	var from, to time.Time
	for name, dst := range map[string]*time.Time{"from": &from, "to": &to} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprintf(w, `{"error": "invalid %s"}`, name)
				return
			}
			*dst = t
		}
	}
	status := q.Get("status")
	var match []map[string]any
	for i := len(a.order) - 1; i >= 0; i-- {
		id := a.order[i]
		at := a.created[id]
		if (!from.IsZero() && at.Before(from)) || (!to.IsZero() && at.After(to)) {
			continue
		}
		ans := OK(fmt.Sprintf(`{"id": %q, "status": "processing", "output": null}`, id))
		if s := a.script[id]; len(s) > 0 {
			ans = s[0]
		}
		var p struct {
			Status  string          `json:"status"`
			Output  json.RawMessage `json:"output"`
			Metrics struct {
				PredictTime float64 `json:"predict_time"`
				Cost        float64 `json:"cost"`
			} `json:"metrics"`
		}
		if ans.Status != http.StatusOK || json.Unmarshal([]byte(ans.Body), &p) != nil {
			continue
		}
		if status != "" && p.Status != status && !(status == eachlabs.StatusError && p.Status == "failed") {
			continue
		}
		e := map[string]any{
			"id": id, "model": a.requests[id].Model, "status": p.Status, "created_at": at.UTC().Format(time.RFC3339),
			"run_time": p.Metrics.PredictTime, "execution_cost": p.Metrics.Cost,
		}
		if len(p.Output) > 0 {
			e["output"] = p.Output
		}
		match = append(match, e)
	}
	total, capped := len(match), false
	if a.capTotal > 0 && total > a.capTotal {
		total, capped = a.capTotal, true
	}
	page := []map[string]any{}
	for i := offset; i < len(match) && i < offset+limit; i++ {
		page = append(page, match[i])
	}
	json.NewEncoder(w).Encode(map[string]any{
		"executions": page, "limit": limit, "offset": offset, "total_count": total, "total_capped": capped,
	})
}
