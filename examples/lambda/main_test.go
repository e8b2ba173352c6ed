package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/stretchr/testify/require"
)

const secret = "whsec_lambda_test"

// awsModule is the directory of the aws-lambda-go module this example
// builds with.
var awsModule = sync.OnceValues(func() ([]byte, error) {
	return exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/aws/aws-lambda-go").Output()
})

// awsEvent returns the named event of aws-lambda-go's own events/testdata.
func awsEvent(t *testing.T, name string) map[string]any {
	t.Helper()
	dir, err := awsModule()
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dir)), "events", "testdata", name))
	require.NoError(t, err)
	var ev map[string]any
	require.NoError(t, json.Unmarshal(data, &ev))
	return ev
}

// delivery returns the named AWS event turned into a POST of body signed
// with key under scheme, base64-encoded if b64, its header names
// lower-case as gateways pass them.
func delivery(t *testing.T, name string, body []byte, key string, scheme eachhooktest.Scheme, b64 bool) map[string]any {
	t.Helper()
	ev := awsEvent(t, name)
	if _, ok := ev["httpMethod"]; ok {
		ev["httpMethod"] = "POST"
	}
	if h, ok := ev["requestContext"].(map[string]any)["http"].(map[string]any); ok {
		h["method"] = "POST"
	}
	for k, vs := range eachhooktest.Headers(key, body, scheme, time.Now()) {
		k = strings.ToLower(k)
		if h, ok := ev["headers"].(map[string]any); ok {
			h[k] = vs[0]
		}
		if h, ok := ev["multiValueHeaders"].(map[string]any); ok {
			h[k] = []any{vs[0]}
		}
	}
	ev["body"], ev["isBase64Encoded"] = string(body), b64
	if b64 {
		ev["body"] = base64.StdEncoding.EncodeToString(body)
	}
	return ev
}

// invoke runs ev through aws-lambda-go's handler, as the Lambda runtime
// does (the event's JSON in, the response's JSON out).
func invoke(t *testing.T, g gateway, ev map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(ev)
	require.NoError(t, err)
	resp, err := lambda.NewHandler(g.handle).Invoke(context.Background(), payload)
	require.NoError(t, err)
	return string(resp)
}

// Response shapes of each format, by status.
const (
	restOK   = `{"statusCode":200,"headers":null,"multiValueHeaders":null,"body":"OK"}`
	restNo   = `{"statusCode":401,"headers":null,"multiValueHeaders":null,"body":"Unauthorized"}`
	restBad  = `{"statusCode":400,"headers":null,"multiValueHeaders":null,"body":"Bad Request"}`
	v2OK     = `{"statusCode":200,"headers":null,"multiValueHeaders":null,"body":"OK","cookies":null}`
	v2No     = `{"statusCode":401,"headers":null,"multiValueHeaders":null,"body":"Unauthorized","cookies":null}`
	v2Get    = `{"statusCode":405,"headers":{"Allow":"POST"},"multiValueHeaders":null,"body":"Method Not Allowed","cookies":null}`
	albOK    = `{"statusCode":200,"statusDescription":"200 OK","headers":null,"multiValueHeaders":null,"body":"OK","isBase64Encoded":false}`
	albGet   = `{"statusCode":405,"statusDescription":"405 Method Not Allowed","headers":{"Allow":"POST"},"multiValueHeaders":null,"body":"Method Not Allowed","isBase64Encoded":false}`
	albMVGet = `{"statusCode":405,"statusDescription":"405 Method Not Allowed","headers":null,"multiValueHeaders":{"Allow":["POST"]},"body":"Method Not Allowed","isBase64Encoded":false}`
	albMVOff = `{"statusCode":503,"statusDescription":"503 Service Unavailable","headers":null,"multiValueHeaders":{"Retry-After":["10"]},"body":"Service Unavailable","isBase64Encoded":false}`
)

func TestAWSEvents(t *testing.T) {
	rec := eachhooktest.NewRecorder()
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	rec.Register(h)
	g := gateway{h}
	ok := eachhooktest.SuccessBody
	failed := eachhooktest.FailedBody
	body, ts := eachhooktest.BodyScheme, eachhooktest.TimestampScheme
	cases := []struct {
		name string
		ev   map[string]any
		want string
	}{
		{"REST API", delivery(t, "apigw-request.json", ok("rest"), secret, body, false), restOK},
		{"REST API, resent", delivery(t, "apigw-request.json", ok("rest"), secret, ts, false), restOK},
		{"REST API, base64", delivery(t, "apigw-request.json", failed("rest-b64"), secret, ts, true), restOK},
		{"REST API, forged", delivery(t, "apigw-request.json", ok("rest-forged"), "whsec_other", body, false), restNo},
		{"REST API, as recorded", awsEvent(t, "apigw-request.json"), restNo},
		{"HTTP API", delivery(t, "apigw-v2-request-no-authorizer.json", ok("http-api"), secret, ts, false), v2OK},
		{"HTTP API, as recorded (GET)", awsEvent(t, "apigw-v2-request-no-authorizer.json"), v2Get},
		{"function URL", delivery(t, "lambda-urls-request.json", failed("url"), secret, body, false), v2OK},
		{"function URL, base64", delivery(t, "lambda-urls-request.json", ok("url-b64"), secret, ts, true), v2OK},
		{"function URL, forged", delivery(t, "lambda-urls-request.json", ok("url-forged"), "whsec_other", ts, false), v2No},
		{"function URL, as recorded", awsEvent(t, "lambda-urls-request.json"), v2No},
		{"ALB", delivery(t, "alb-lambda-target-request-headers-only.json", ok("alb"), secret, ts, false), albOK},
		{"ALB, as recorded (GET)", awsEvent(t, "alb-lambda-target-request-headers-only.json"), albGet},
		{"ALB multi-value", delivery(t, "alb-lambda-target-request-multivalue-headers.json", ok("alb-mv"), secret, body, true), albOK},
		{"ALB multi-value, as recorded (GET)", awsEvent(t, "alb-lambda-target-request-multivalue-headers.json"), albMVGet},
	}
	for _, c := range cases {
		require.JSONEq(t, c.want, invoke(t, g, c.ev), c.name)
	}
	bad := delivery(t, "apigw-request.json", ok("rest-bad-b64"), secret, body, true)
	bad["body"] = "%%% not base64"
	require.JSONEq(t, restBad, invoke(t, g, bad))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, rec.Wait(ctx, 7))
	require.ElementsMatch(t, []string{"rest", "rest-b64", "http-api", "url", "url-b64", "alb", "alb-mv"}, rec.IDs())
	require.Equal(t, map[string]int{eachhooktest.KindSuccess: 5, eachhooktest.KindFailed: 2}, rec.Counts())

	require.NoError(t, h.Shutdown(ctx))
	require.JSONEq(t, albMVOff, invoke(t, g, delivery(t, "alb-lambda-target-request-multivalue-headers.json", ok("late"), secret, body, false)))
}

func TestUnknownEventIsAnError(t *testing.T) {
	h, err := newHandler(secret, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	for _, name := range []string{"sqs-event.json", "apigw-websocket-request-send-message.json"} {
		payload, err := json.Marshal(awsEvent(t, name))
		require.NoError(t, err)
		_, err = gateway{h}.handle(context.Background(), payload)
		require.ErrorIs(t, err, errUnknownEvent, name)
	}
	require.NoError(t, h.Shutdown(context.Background()))
}

func TestNoSecretIsAnError(t *testing.T) {
	_, err := newHandler("", slog.New(slog.DiscardHandler))
	require.ErrorIs(t, err, eachhook.ErrInvalidOption)
}
