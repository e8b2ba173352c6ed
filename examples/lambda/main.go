// Command lambda receives each::labs webhooks in an AWS Lambda function
// behind API Gateway (REST API proxy integration, or a Lambda function URL
// in the same payload format), with the same checks, dedupe and callbacks
// as the net/http receiver: the event's method, headers and body go to
// [eachhook.Handler.Receive], whose status code is the function's answer.
//
// API Gateway base64-encodes a body it takes for binary
// (IsBase64Encoded); it is decoded before verifying, so that the
// signature is checked over the bytes the sender signed.
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
	"fmt"
	"log/slog"
	"net/http"
	"os"

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

// gateway turns API Gateway proxy events into deliveries.
type gateway struct{ h *eachhook.Handler }

func (g gateway) handle(ctx context.Context, ev events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	body := []byte(ev.Body)
	if ev.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(ev.Body)
		if err != nil {
			return events.APIGatewayProxyResponse{StatusCode: http.StatusBadRequest, Body: "body is not base64"}, nil
		}
		body = b
	}
	code := g.h.Receive(ctx, ev.HTTPMethod, headerOf(ev), body)
	resp := events.APIGatewayProxyResponse{StatusCode: code, Body: http.StatusText(code)}
	switch code {
	case http.StatusServiceUnavailable:
		resp.Headers = map[string]string{"Retry-After": "10"}
	case http.StatusMethodNotAllowed:
		resp.Headers = map[string]string{"Allow": http.MethodPost}
	}
	return resp, nil
}

// headerOf returns the event's headers: every value of MultiValueHeaders
// when the gateway sent them, else Headers (one value per name). Names
// are canonicalised, as net/http does.
func headerOf(ev events.APIGatewayProxyRequest) http.Header {
	h := http.Header{}
	if len(ev.MultiValueHeaders) > 0 {
		for k, vs := range ev.MultiValueHeaders {
			for _, v := range vs {
				h.Add(k, v)
			}
		}
		return h
	}
	for k, v := range ev.Headers {
		h.Set(k, v)
	}
	return h
}
