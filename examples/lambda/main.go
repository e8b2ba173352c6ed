// Command lambda receives each::labs webhooks in an AWS Lambda function,
// with the same checks, dedupe and callbacks as the net/http receiver. It
// serves the four ways an HTTP request reaches a function, each answered
// in the response format its sender expects:
//
//   - API Gateway REST API proxy integration (payload format 1.0, also an
//     HTTP API set to 1.0): an events.APIGatewayProxyResponse;
//   - API Gateway HTTP API (payload format 2.0): an
//     events.APIGatewayV2HTTPResponse;
//   - Lambda function URL (the same payload format 2.0, answered in the
//     same format);
//   - Application Load Balancer target group: an
//     events.ALBTargetGroupResponse with statusCode, statusDescription
//     ("200 OK"), isBase64Encoded, and its headers in multiValueHeaders
//     when the request came with multiValueHeaders (the target group's
//     multi-value headers setting), else in headers.
//
// The format is told from the event's JSON: requestContext.elb marks a
// load balancer, "version": "2.0" payload format 2.0, and httpMethod
// payload format 1.0; any other event is refused with an error
// (errUnknownEvent), which Lambda reports as a failed invocation. The
// event's method, headers and body go to [eachhook.Handler.Receive], whose
// status code is the answer, with Retry-After on a 503 and Allow: POST on
// a 405, as ServeHTTP sends them. Header names are canonicalised as
// net/http does (gateways pass them lower-case). A body the sender
// base64-encoded (isBase64Encoded) is decoded before verifying, so that
// the signature is checked over the bytes the sender signed; one that is
// not valid base64 is answered 400.
//
// Lambda freezes the execution environment once the function returns:
// a callback still running on a worker then goes on only when the next
// invocation thaws the environment, and is lost if the environment is
// reclaimed first. Keep callbacks short, or give the Handler a durable
// queue (module github.com/eachhook/eachhook/durable on Postgres), whose
// stored jobs any later invocation or another worker finishes.
//
//	EACHHOOK_SECRET=whsec_... (set in the function's configuration)
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/eachhook/eachhook"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	h, err := newHandler(os.Getenv("EACHHOOK_SECRET"), log)
	if err != nil {
		log.Error("cannot start", "err", err)
		os.Exit(1)
	}
	if err := h.Start(context.Background()); err != nil {
		log.Error("cannot start", "err", err)
		os.Exit(1)
	}
	lambda.Start(gateway{h}.handle)
}

// newHandler builds the receiver and registers its callbacks.
func newHandler(secret string, log *slog.Logger, opts ...eachhook.Option) (*eachhook.Handler, error) {
	h, err := eachhook.New(append([]eachhook.Option{eachhook.WithSecret(secret), eachhook.WithLogger(log)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("set EACHHOOK_SECRET to the webhook_secret of your predictions: %w", err)
	}
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		urls, _ := s.URLs()
		log.Info("prediction succeeded", "id", s.ID, "output", urls)
		return nil
	})
	h.OnFailed(func(ctx context.Context, f *eachhook.Failure) error {
		log.Info("prediction failed", "id", f.ID, "logs", f.Logs)
		return nil
	})
	return h, nil
}

// errUnknownEvent refuses an event that is none of the formats served.
var errUnknownEvent = errors.New("lambda: not an API Gateway, function URL or load balancer event")

// gateway turns the events of API Gateway, function URLs and load
// balancers into deliveries.
type gateway struct{ h *eachhook.Handler }

// handle answers one invocation in the format of its event.
func (g gateway) handle(ctx context.Context, event json.RawMessage) (any, error) {
	var probe struct {
		Version        string `json:"version"`
		HTTPMethod     string `json:"httpMethod"`
		RequestContext struct {
			ELB json.RawMessage `json:"elb"`
		} `json:"requestContext"`
	}
	if err := json.Unmarshal(event, &probe); err != nil {
		return nil, fmt.Errorf("%w: %w", errUnknownEvent, err)
	}
	switch {
	case probe.RequestContext.ELB != nil:
		var ev events.ALBTargetGroupRequest
		if err := json.Unmarshal(event, &ev); err != nil {
			return nil, err
		}
		code, header := g.receive(ctx, ev.HTTPMethod, ev.Headers, ev.MultiValueHeaders, ev.Body, ev.IsBase64Encoded)
		resp := events.ALBTargetGroupResponse{
			StatusCode:        code,
			StatusDescription: strconv.Itoa(code) + " " + http.StatusText(code),
			Body:              http.StatusText(code),
		}
		if ev.MultiValueHeaders != nil {
			resp.MultiValueHeaders = header
		} else {
			resp.Headers = single(header)
		}
		return resp, nil
	case probe.Version == "2.0":
		var ev events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(event, &ev); err != nil {
			return nil, err
		}
		code, header := g.receive(ctx, ev.RequestContext.HTTP.Method, ev.Headers, nil, ev.Body, ev.IsBase64Encoded)
		return events.APIGatewayV2HTTPResponse{StatusCode: code, Headers: single(header), Body: http.StatusText(code)}, nil
	case probe.HTTPMethod != "":
		var ev events.APIGatewayProxyRequest
		if err := json.Unmarshal(event, &ev); err != nil {
			return nil, err
		}
		code, header := g.receive(ctx, ev.HTTPMethod, ev.Headers, ev.MultiValueHeaders, ev.Body, ev.IsBase64Encoded)
		return events.APIGatewayProxyResponse{StatusCode: code, Headers: single(header), Body: http.StatusText(code)}, nil
	}
	return nil, errUnknownEvent
}

// receive passes one request to the Handler and returns its status code
// and the headers that go with it. The request's headers are every value
// of multi when the event has them, else single (one value per name).
func (g gateway) receive(ctx context.Context, method string, single map[string]string, multi map[string][]string, body string, base64Encoded bool) (int, http.Header) {
	raw := []byte(body)
	if base64Encoded {
		b, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			return http.StatusBadRequest, nil
		}
		raw = b
	}
	header := http.Header{}
	for k, vs := range multi {
		for _, v := range vs {
			header.Add(k, v)
		}
	}
	if len(multi) == 0 {
		for k, v := range single {
			header.Add(k, v)
		}
	}
	code := g.h.Receive(ctx, method, header, raw)
	switch code {
	case http.StatusServiceUnavailable:
		return code, http.Header{"Retry-After": {"10"}}
	case http.StatusMethodNotAllowed:
		return code, http.Header{"Allow": {http.MethodPost}}
	}
	return code, nil
}

// single returns the first value of each header, or nil for none.
func single(h http.Header) map[string]string {
	if len(h) == 0 {
		return nil
	}
	m := make(map[string]string, len(h))
	for k := range h {
		m[k] = h.Get(k)
	}
	return m
}
