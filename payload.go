package eachhook

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Payload errors.
var (
	// ErrMalformedPayload means a verified body is not a JSON object with a
	// non-empty string "id".
	ErrMalformedPayload = errors.New("eachhook: malformed payload")
	// ErrOutputShape means Output does not have the shape a helper asked
	// for, such as [Success.URL] on an array.
	ErrOutputShape = errors.New("eachhook: output has another shape")
)

// Prediction statuses the sender reports in a terminal webhook.
const (
	StatusSuccess = "success"
	StatusFailed  = "failed"
)

// Metrics are the measurements the sender reports for a prediction.
type Metrics struct {
	// PredictTime is the time the model ran, in seconds.
	PredictTime float64 `json:"predict_time"`
	// Cost is what the prediction cost, in the account's currency.
	Cost float64 `json:"cost"`
}

// Success is a prediction that finished with an output.
type Success struct {
	// ID is the prediction id; it is the idempotency key.
	ID string
	// Output is the model's output as sent: a URL string, an array of
	// URLs, an object or text depending on the model. See [Success.URL],
	// [Success.URLs] and [Success.Decode].
	Output json.RawMessage
	// Input is the prediction's input as sent.
	Input json.RawMessage
	// Metrics holds the reported run time and cost (zero when absent).
	Metrics Metrics
	// Logs holds the prediction's logs, if the sender included any.
	Logs string
	// Raw is the whole verified body.
	Raw json.RawMessage
}

// Failure is a prediction that failed.
type Failure struct {
	// ID is the prediction id; it is the idempotency key.
	ID string
	// Input is the prediction's input as sent.
	Input json.RawMessage
	// Logs holds the failure's logs, such as "Error: Model timeout after 30s".
	Logs string
	// Output is the output as sent; null in the documented payload.
	Output json.RawMessage
	// Metrics holds the reported run time and cost (zero when absent).
	Metrics Metrics
	// Raw is the whole verified body.
	Raw json.RawMessage
}

// URL returns Output when it is a single JSON string, such as the URL of a
// generated image. Otherwise it returns an error matching [ErrOutputShape].
func (s *Success) URL() (string, error) {
	var u string
	if err := json.Unmarshal(s.Output, &u); err != nil {
		return "", fmt.Errorf("%w: want a string: %v", ErrOutputShape, err)
	}
	return u, nil
}

// URLs returns Output as a list of strings: an array of strings as is, or a
// single string as a list of one. Otherwise it returns an error matching
// [ErrOutputShape].
func (s *Success) URLs() ([]string, error) {
	var list []string
	if err := json.Unmarshal(s.Output, &list); err == nil && list != nil {
		return list, nil
	}
	u, err := s.URL()
	if err != nil {
		return nil, fmt.Errorf("%w: want a string or an array of strings", ErrOutputShape)
	}
	return []string{u}, nil
}

// Decode unmarshals Output into v, for models whose output is an object.
func (s *Success) Decode(v any) error {
	if err := json.Unmarshal(s.Output, v); err != nil {
		return fmt.Errorf("%w: %v", ErrOutputShape, err)
	}
	return nil
}

// envelope is the part of a body that is read before the 200: enough to
// route and deduplicate it. It decodes nothing it does not need.
type envelope struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// decodeEnvelope reads id and status from a body. The body must be a JSON
// object whose "id" is a non-empty string and whose "status", if present,
// is a string.
func decodeEnvelope(body []byte) (envelope, error) {
	var e envelope
	if err := json.Unmarshal(body, &e); err != nil {
		return e, fmt.Errorf("%w: %v", ErrMalformedPayload, err)
	}
	if e.ID == "" {
		return e, fmt.Errorf("%w: no id", ErrMalformedPayload)
	}
	return e, nil
}

// wirePayload is the documented body. Fields whose type varies are kept raw
// so that no unexpected shape can reject a delivery that was accepted.
type wirePayload struct {
	ID      string          `json:"id"`
	Status  string          `json:"status"`
	Output  json.RawMessage `json:"output"`
	Input   json.RawMessage `json:"input"`
	Metrics json.RawMessage `json:"metrics"`
	Logs    json.RawMessage `json:"logs"`
}

// decodePayload decodes a body already checked by decodeEnvelope. It never
// fails on a field of an unexpected type: such a field is left zero (Logs
// keeps its JSON text), since the delivery was already acknowledged.
func decodePayload(body []byte) wirePayload {
	var p wirePayload
	_ = json.Unmarshal(body, &p) // the envelope check proved it valid JSON
	return p
}

func (p *wirePayload) metrics() Metrics {
	var m Metrics
	if len(p.Metrics) > 0 {
		// A field of another type stays zero; the rest still decode.
		_ = json.Unmarshal(p.Metrics, &m)
	}
	return m
}

func (p *wirePayload) logs() string {
	if len(p.Logs) == 0 || string(p.Logs) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(p.Logs, &s) == nil {
		return s
	}
	return string(p.Logs)
}

func newSuccess(body []byte) *Success {
	p := decodePayload(body)
	return &Success{ID: p.ID, Output: p.Output, Input: p.Input, Metrics: p.metrics(), Logs: p.logs(), Raw: body}
}

func newFailure(body []byte) *Failure {
	p := decodePayload(body)
	return &Failure{ID: p.ID, Input: p.Input, Logs: p.logs(), Output: p.Output, Metrics: p.metrics(), Raw: body}
}
