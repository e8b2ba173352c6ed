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
// route and deduplicate it.
type envelope struct {
	ID     string
	Status string
}

// decodeEnvelope reads id and status from a body. The body must be a JSON
// object whose "id" is a non-empty string and whose "status", if present,
// is a string. Other members are skipped, whatever their type.
func decodeEnvelope(body []byte) (envelope, error) {
	var e envelope
	if !json.Valid(body) {
		return e, fmt.Errorf("%w: not JSON", ErrMalformedPayload)
	}
	var bad string
	isObject := members(body, func(key, value []byte) bool {
		switch string(key) {
		case "id":
			id, ok := stringValue(value)
			if !ok {
				bad = "id is not a string"
				return false
			}
			e.ID = id
		case "status":
			e.Status = statusValue(value)
			if e.Status == "" && string(value) != `""` {
				bad = "status is not a string"
				return false
			}
		}
		return true
	})
	switch {
	case !isObject:
		return e, fmt.Errorf("%w: not a JSON object", ErrMalformedPayload)
	case bad != "":
		return e, fmt.Errorf("%w: %s", ErrMalformedPayload, bad)
	case e.ID == "":
		return e, fmt.Errorf("%w: no id", ErrMalformedPayload)
	}
	return e, nil
}

// statusValue decodes a status without allocating for the known ones.
func statusValue(raw []byte) string {
	switch string(raw) {
	case `"success"`:
		return StatusSuccess
	case `"failed"`:
		return StatusFailed
	}
	s, _ := stringValue(raw)
	return s
}

// payload holds the members of a verified body that the callbacks see.
// Raw values alias the body, which the delivery owns and never changes.
type payload struct {
	id      string
	output  json.RawMessage
	input   json.RawMessage
	metrics Metrics
	logs    string
}

// decodePayload decodes a body already checked by decodeEnvelope. It never
// fails on a member of an unexpected type: such a member is left zero (logs
// that are not a string keep their JSON text), since the delivery was
// already acknowledged.
func decodePayload(id string, body []byte) payload {
	p := payload{id: id}
	members(body, func(key, value []byte) bool {
		switch string(key) {
		case "output":
			p.output = value
		case "input":
			p.input = value
		case "metrics":
			p.metrics = decodeMetrics(value)
		case "logs":
			if string(value) != "null" {
				if s, ok := stringValue(value); ok {
					p.logs = s
				} else {
					p.logs = string(value)
				}
			}
		}
		return true
	})
	return p
}

func decodeMetrics(raw []byte) Metrics {
	var m Metrics
	members(raw, func(key, value []byte) bool {
		switch string(key) {
		case "predict_time":
			m.PredictTime, _ = floatValue(value)
		case "cost":
			m.Cost, _ = floatValue(value)
		}
		return true
	})
	return m
}

func newSuccess(id string, body []byte) *Success {
	p := decodePayload(id, body)
	return &Success{ID: p.id, Output: p.output, Input: p.input, Metrics: p.metrics, Logs: p.logs, Raw: body}
}

func newFailure(id string, body []byte) *Failure {
	p := decodePayload(id, body)
	return &Failure{ID: p.id, Input: p.input, Logs: p.logs, Output: p.output, Metrics: p.metrics, Raw: body}
}
