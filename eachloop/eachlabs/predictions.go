package eachlabs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
)

// Prediction statuses that [Client.GetPrediction] reports. Success, Error
// (or [StatusFailed]: the documentation publishes both) and Cancelled are
// terminal; the others mean the prediction still runs.
const (
	StatusCreated    = "created"
	StatusStarting   = "starting"
	StatusProcessing = "processing"
	StatusSuccess    = "success"
	StatusError      = "error"
	StatusCancelled  = "cancelled"
)

// ErrNotCreated is matched by the error of [Client.CreatePrediction] when
// the API answered 2xx but did not report a created prediction (a status
// other than "success", or no prediction id).
var ErrNotCreated = errors.New("eachlabs: prediction not created")

// PredictionRequest is the body of POST /v1/prediction.
type PredictionRequest struct {
	// Model is the model's slug, such as "flux-1-1-pro".
	Model string `json:"model"`
	// Version is the model version; the API ignores it and it is sent
	// only when set.
	Version string `json:"version,omitempty"`
	// Input is the model's input, encoded as JSON (a map, a struct or a
	// [json.RawMessage]).
	Input any `json:"input"`
	// WebhookURL is where the outcome is delivered; none when empty.
	WebhookURL string `json:"webhook_url,omitempty"`
	// WebhookSecret signs the webhook (HMAC-SHA256); unsigned when empty.
	WebhookSecret string `json:"webhook_secret,omitempty"`
}

// Created is the answer to [Client.CreatePrediction].
type Created struct {
	// Status is "success" for a created prediction.
	Status string `json:"status"`
	// Message is the API's message, if any.
	Message string `json:"message"`
	// PredictionID is the new prediction's id.
	PredictionID string `json:"predictionID"`
}

// Prediction is the answer to [Client.GetPrediction].
type Prediction struct {
	// ID is the prediction id.
	ID string
	// Status is one of StatusCreated, StatusStarting, StatusProcessing,
	// StatusSuccess, StatusError, StatusFailed or StatusCancelled.
	Status string
	// Input is the prediction's input as sent.
	Input json.RawMessage
	// Output is the model's output on success; on a classified failure it
	// is {"error_code": "...", "error_message": "..."} (see
	// [Prediction.Failure]). It may be null or absent.
	Output json.RawMessage
	// Logs holds the prediction's logs ("" when absent or null; JSON text
	// when they are not a string).
	Logs string
	// Metrics holds the reported measurements (zero when absent).
	Metrics PredictionMetrics
	// URLs are the API's links for the prediction.
	URLs PredictionURLs
	// Raw is the whole answer.
	Raw json.RawMessage
}

// PredictionMetrics are the measurements of a prediction. A member of an
// unexpected type is left zero rather than failing the whole answer.
type PredictionMetrics struct {
	// PredictTime is how long the model ran, in seconds.
	PredictTime float64
	// Cost is what the prediction cost.
	Cost float64
	// Tier, BilledSeconds and OutputGB are reported by metered engines.
	Tier          string
	BilledSeconds float64
	OutputGB      float64
}

// PredictionURLs are the links the API gives for a prediction.
type PredictionURLs struct {
	// Cancel cancels the prediction.
	Cancel string `json:"cancel"`
	// Get reads the prediction.
	Get string `json:"get"`
}

// Terminal reports whether the prediction has finished: Status is
// StatusSuccess, StatusError, StatusFailed or StatusCancelled.
func (p *Prediction) Terminal() bool {
	switch p.Status {
	case StatusSuccess, StatusError, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// Failure returns the error code (such as "PROVIDER_RATE_LIMIT") and
// message of a classified failure, whose Output is {"error_code",
// "error_message"}. Both are empty when Output has another shape, as
// legacy failures may.
func (p *Prediction) Failure() (code, message string) {
	var f struct {
		Code    string `json:"error_code"`
		Message string `json:"error_message"`
	}
	if len(p.Output) == 0 || p.Output[0] != '{' || json.Unmarshal(p.Output, &f) != nil {
		return "", ""
	}
	return f.Code, f.Message
}

// UnmarshalJSON implements [json.Unmarshaler]. Only "id" and "status" must
// be strings; the other members are kept or skipped, whatever their type.
func (p *Prediction) UnmarshalJSON(b []byte) error {
	var w struct {
		ID      string          `json:"id"`
		Status  string          `json:"status"`
		Input   json.RawMessage `json:"input"`
		Output  json.RawMessage `json:"output"`
		Logs    json.RawMessage `json:"logs"`
		Metrics json.RawMessage `json:"metrics"`
		URLs    json.RawMessage `json:"urls"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*p = Prediction{ID: w.ID, Status: w.Status, Input: w.Input, Output: w.Output, Raw: bytes.Clone(b)}
	if len(w.Logs) > 0 && string(w.Logs) != "null" {
		if json.Unmarshal(w.Logs, &p.Logs) != nil {
			p.Logs = string(w.Logs)
		}
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(w.Metrics, &m) == nil {
		json.Unmarshal(m["predict_time"], &p.Metrics.PredictTime)
		json.Unmarshal(m["cost"], &p.Metrics.Cost)
		json.Unmarshal(m["tier"], &p.Metrics.Tier)
		json.Unmarshal(m["billed_seconds"], &p.Metrics.BilledSeconds)
		json.Unmarshal(m["output_gb"], &p.Metrics.OutputGB)
	}
	json.Unmarshal(w.URLs, &p.URLs)
	return nil
}

// createPath is the path of [Client.CreatePrediction].
const createPath = "/v1/prediction"

// CreatePrediction starts a prediction: POST /v1/prediction. It returns the
// API's answer, whose PredictionID names the new prediction; an answer
// without one matches [ErrNotCreated]. It never retries. A refusal for the
// account's balance matches [ErrPaymentRequired]; one for its concurrency
// cap matches [ErrConcurrencyLimit] (and [ErrRateLimited]): neither created
// a prediction, and neither clears by retrying at once. Do not retry a
// request that failed with [ErrTimeout] blindly: the prediction may have
// been created.
func (c *Client) CreatePrediction(ctx context.Context, req PredictionRequest) (*Created, error) {
	if req.Model == "" {
		return nil, errors.New("eachlabs: empty model")
	}
	var out Created
	if err := c.post(ctx, createPath, req, &out); err != nil {
		return nil, err
	}
	if out.PredictionID == "" || (out.Status != "" && out.Status != "success") {
		return nil, fmt.Errorf("%w: status %q, message %q", ErrNotCreated, out.Status, out.Message)
	}
	return &out, nil
}

// GetPrediction returns a prediction's state: GET /v1/prediction/{id}. An
// unknown id matches [ErrNotFound].
func (c *Client) GetPrediction(ctx context.Context, id string) (*Prediction, error) {
	if id == "" {
		return nil, errors.New("eachlabs: empty prediction id")
	}
	var p Prediction
	if err := c.get(ctx, "/v1/prediction/"+url.PathEscape(id), nil, &p); err != nil {
		return nil, err
	}
	if p.ID == "" {
		p.ID = id
	}
	return &p, nil
}
