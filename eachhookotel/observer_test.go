package eachhookotel_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhookotel"
	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/observe"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const secret = "whsec_otel_test"

// telemetry is an in-memory OpenTelemetry pipeline.
type telemetry struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	mp     *sdkmetric.MeterProvider
}

func newTelemetry(t *testing.T) *telemetry {
	tel := &telemetry{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	t.Cleanup(func() {
		require.NoError(t, tel.mp.Shutdown(context.Background()))
		require.NoError(t, tel.tp.Shutdown(context.Background()))
	})
	return tel
}

// key renders an attribute set as "k=v,k=v", sorted.
func key(set attribute.Set) string {
	var parts []string
	for _, kv := range set.ToSlice() {
		parts = append(parts, string(kv.Key)+"="+kv.Value.String())
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// points returns, for the metric named name, each data point's value (a
// histogram's count) by its attribute set.
func (tel *telemetry) points(t *testing.T, name string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, tel.reader.Collect(context.Background(), &rm))
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, eachhookotel.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[key(p.Attributes)] = p.Value
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[key(p.Attributes)] = p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[key(p.Attributes)] = int64(p.Count)
				}
			default:
				t.Fatalf("%s: unexpected data %T", name, m.Data)
			}
		}
	}
	return out
}

func serve(h http.Handler, r *http.Request) int {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

func signed(id string) *http.Request { return eachhooktest.NewSuccessRequest("/webhook", secret, id) }

// TestScriptedSequence runs valid, duplicate, forged, oversize and
// queue-full deliveries, a callback that fails once then succeeds and one
// that always panics, and checks every count.
func TestScriptedSequence(t *testing.T) {
	tel := newTelemetry(t)
	obs, err := eachhookotel.New(eachhookotel.WithMeterProvider(tel.mp), eachhookotel.WithTracerProvider(tel.tp))
	require.NoError(t, err)
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithObserver(obs), eachhook.WithWorkers(1),
		eachhook.WithQueueSize(1), eachhook.WithMaxBodyBytes(4096), eachhook.WithRetry(2, time.Millisecond),
		eachhook.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	release := make(chan struct{})
	started := make(chan string, 10)
	flakyRuns := 0
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		started <- s.ID
		switch s.ID {
		case "valid":
			<-release
		case "flaky":
			flakyRuns++ // one worker: no race
			if flakyRuns == 1 {
				return errors.New("downstream unavailable")
			}
		case "hopeless":
			panic("always")
		}
		return nil
	})

	// The first request carries a server span, as otelhttp would start.
	reqCtx, reqSpan := tel.tp.Tracer("test").Start(context.Background(), "POST /webhook", trace.WithSpanKind(trace.SpanKindServer))
	require.Equal(t, 200, serve(h, signed("valid").WithContext(reqCtx)))
	reqSpan.End()
	require.Equal(t, "valid", <-started) // the only worker is busy
	require.Equal(t, 200, serve(h, signed("valid")), "duplicate")
	require.Equal(t, 401, serve(h, eachhooktest.NewSuccessRequest("/webhook", "forged", "forged")))
	require.Equal(t, 413, serve(h, eachhooktest.NewRequest("/webhook", secret, bytes.Repeat([]byte(" "), 5000), eachhooktest.BodyScheme, time.Now())))
	require.Equal(t, 200, serve(h, signed("queued")))
	require.Equal(t, map[string]int64{"": 1}, tel.points(t, eachhookotel.MetricQueueDepth))
	require.Equal(t, 503, serve(h, signed("no-room")))
	close(release)
	require.Equal(t, "queued", <-started)
	require.Equal(t, 200, serve(h, signed("flaky")))
	require.Equal(t, "flaky", <-started) // out of the queue, which has room again
	require.Equal(t, 200, serve(h, signed("hopeless")))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, h.Shutdown(ctx))

	require.Equal(t, map[string]int64{
		"eachhook.delivery.outcome=accepted,eachhook.prediction.status=success":  4,
		"eachhook.delivery.outcome=duplicate,eachhook.prediction.status=success": 1,
		"eachhook.delivery.outcome=refused,eachhook.refusal.reason=signature":    1,
		"eachhook.delivery.outcome=refused,eachhook.refusal.reason=too_large":    1,
		"eachhook.delivery.outcome=refused,eachhook.refusal.reason=queue_full":   1,
	}, tel.points(t, eachhookotel.MetricDeliveriesReceived))
	require.Equal(t, map[string]int64{
		"eachhook.callback.outcome=ok,eachhook.prediction.status=success":    3,
		"eachhook.callback.outcome=error,eachhook.prediction.status=success": 1,
		"eachhook.callback.outcome=panic,eachhook.prediction.status=success": 2,
	}, tel.points(t, eachhookotel.MetricCallbackDuration))
	require.Equal(t, map[string]int64{
		"eachhook.give_up.reason=failed,eachhook.prediction.status=success": 1,
	}, tel.points(t, eachhookotel.MetricDeliveriesGivenUp))
	require.Equal(t, map[string]int64{"": 0}, tel.points(t, eachhookotel.MetricQueueDepth))
	require.Equal(t, map[string]int64{"": 1}, tel.points(t, eachhookotel.MetricQueueCapacity))

	// The request's span says what became of the delivery.
	var server sdktrace.ReadOnlySpan
	var callbacks []sdktrace.ReadOnlySpan
	for _, s := range tel.spans.Ended() {
		switch s.Name() {
		case "POST /webhook":
			server = s
		case eachhookotel.SpanCallback:
			callbacks = append(callbacks, s)
		}
	}
	require.NotNil(t, server)
	require.Contains(t, server.Attributes(), eachhookotel.AttrDeliveryOutcome.String(eachhookotel.OutcomeAccepted))
	require.Contains(t, server.Attributes(), eachhookotel.AttrPredictionID.String("valid"))

	// One span per callback run, in the order they ran (one worker).
	type run struct {
		id      string
		attempt int64
		status  codes.Code
		errType string
		links   int
	}
	var runs []run
	for _, s := range callbacks {
		require.Equal(t, trace.SpanKindConsumer, s.SpanKind())
		attrs := attribute.NewSet(s.Attributes()...)
		id, _ := attrs.Value(eachhookotel.AttrPredictionID)
		attempt, _ := attrs.Value(eachhookotel.AttrCallbackAttempt)
		errType, _ := attrs.Value(eachhookotel.AttrErrorType)
		status, _ := attrs.Value(eachhookotel.AttrPredictionStatus)
		require.Equal(t, "success", status.AsString())
		runs = append(runs, run{id.AsString(), attempt.AsInt64(), s.Status().Code, errType.AsString(), len(s.Links())})
		if id.AsString() == "valid" {
			require.Equal(t, server.SpanContext(), s.Links()[0].SpanContext, "linked to the request's span")
			require.NotEqual(t, server.SpanContext().TraceID(), s.SpanContext().TraceID(), "a trace of its own")
		}
	}
	require.Equal(t, []run{
		{"valid", 1, codes.Unset, "", 1},
		{"queued", 1, codes.Unset, "", 0},
		{"flaky", 1, codes.Error, "*errors.errorString", 0},
		{"flaky", 2, codes.Unset, "", 0},
		{"hopeless", 1, codes.Error, "panic", 0},
		{"hopeless", 2, codes.Error, "panic", 0},
	}, runs)
}

// TestCallbackSpanIsTheCallbacksParent checks that spans the callback
// starts nest under the callback span.
func TestCallbackSpanIsTheCallbacksParent(t *testing.T) {
	tel := newTelemetry(t)
	obs, err := eachhookotel.New(eachhookotel.WithMeterProvider(tel.mp), eachhookotel.WithTracerProvider(tel.tp),
		eachhookotel.WithAttributes(attribute.String("eachhook.endpoint", "predictions")))
	require.NoError(t, err)
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithObserver(obs), eachhook.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	h.OnFailed(func(ctx context.Context, f *eachhook.Failure) error {
		_, span := tel.tp.Tracer("app").Start(ctx, "store result")
		span.End()
		return nil
	})
	require.Equal(t, 200, serve(h, eachhooktest.NewFailedRequest("/webhook", secret, "f1")))
	require.Equal(t, 200, serve(h, signed("no-success-callback")))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, h.Shutdown(ctx))

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range tel.spans.Ended() {
		spans[s.Name()] = s
	}
	require.Len(t, spans, 2)
	require.Equal(t, spans[eachhookotel.SpanCallback].SpanContext().SpanID(), spans["store result"].Parent().SpanID())
	require.Contains(t, spans[eachhookotel.SpanCallback].Attributes(), attribute.String("eachhook.endpoint", "predictions"))
	require.Equal(t, map[string]int64{
		"eachhook.delivery.outcome=accepted,eachhook.endpoint=predictions,eachhook.prediction.status=failed": 1,
		"eachhook.delivery.outcome=ignored,eachhook.endpoint=predictions,eachhook.prediction.status=success": 1,
	}, tel.points(t, eachhookotel.MetricDeliveriesReceived))
}

func TestShutdownDropIsCountedAsNotRun(t *testing.T) {
	tel := newTelemetry(t)
	obs, err := eachhookotel.New(eachhookotel.WithMeterProvider(tel.mp), eachhookotel.WithTracerProvider(tel.tp))
	require.NoError(t, err)
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithObserver(obs), eachhook.WithWorkers(1),
		eachhook.WithRetry(1, 0), eachhook.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	started := make(chan struct{})
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	require.Equal(t, 200, serve(h, signed("running")))
	<-started
	require.Equal(t, 200, serve(h, signed("dropped")))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, h.Shutdown(ctx), context.DeadlineExceeded)
	want := map[string]int64{
		"eachhook.give_up.reason=failed,eachhook.prediction.status=success":  1,
		"eachhook.give_up.reason=not_run,eachhook.prediction.status=success": 1,
	}
	require.Eventually(t, func() bool {
		got := tel.points(t, eachhookotel.MetricDeliveriesGivenUp)
		return len(got) == 2 && got[key(attribute.NewSet(eachhookotel.AttrGiveUpReason.String("failed"), eachhookotel.AttrPredictionStatus.String("success")))] == 1
	}, 5*time.Second, time.Millisecond)
	require.Equal(t, want, tel.points(t, eachhookotel.MetricDeliveriesGivenUp))
	require.Equal(t, map[string]int64{"": 0}, tel.points(t, eachhookotel.MetricQueueDepth))
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	tel := newTelemetry(t)
	for _, tc := range []struct {
		name string
		opt  eachhookotel.Option
	}{
		{"nil meter provider", eachhookotel.WithMeterProvider(nil)},
		{"nil tracer provider", eachhookotel.WithTracerProvider(nil)},
		{"attribute without a key", eachhookotel.WithAttributes(attribute.String("", "x"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := eachhookotel.New(eachhookotel.WithMeterProvider(tel.mp), eachhookotel.WithTracerProvider(tel.tp), tc.opt)
			require.ErrorIs(t, err, eachhookotel.ErrInvalidOption)
		})
	}
	_, err := eachhookotel.New(eachhookotel.WithMeterProvider(tel.mp), eachhookotel.WithTracerProvider(tel.tp),
		eachhookotel.WithAttributes(attribute.String("eachhook.endpoint", "predictions")))
	require.NoError(t, err)
}

// TestQueueWaitHistogram: one data point per delivery's first attempt,
// none for retries, with the wait the Handler measured.
func TestQueueWaitHistogram(t *testing.T) {
	tel := newTelemetry(t)
	obs, err := eachhookotel.New(eachhookotel.WithMeterProvider(tel.mp), eachhookotel.WithTracerProvider(tel.tp))
	require.NoError(t, err)
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithObserver(obs), eachhook.WithRetry(3, time.Millisecond),
		eachhook.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		if s.ID == "flaky" && eachhook.AttemptFromContext(ctx) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	h.OnFailed(func(context.Context, *eachhook.Failure) error { return nil })
	for _, id := range []string{"a", "b", "flaky"} {
		require.Equal(t, 200, serve(h, signed(id)))
	}
	require.Equal(t, 200, serve(h, eachhooktest.NewFailedRequest("/webhook", secret, "f")))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, h.Shutdown(ctx))
	require.Equal(t, map[string]int64{
		"eachhook.prediction.status=success": 3, // a, b and flaky's first attempt only
		"eachhook.prediction.status=failed":  1,
	}, tel.points(t, eachhookotel.MetricQueueWait))
}

// callbackSpans returns the ended eachhook.callback spans, in the order
// they ended.
func (tel *telemetry) callbackSpans() []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tel.spans.Ended() {
		if s.Name() == eachhookotel.SpanCallback {
			out = append(out, s)
		}
	}
	return out
}

// TestMemoryModeSpansLinkToTheRequest: with the in-memory queue every
// attempt's callback span starts a trace of its own and links to the span
// of the request that delivered the prediction; a request without a span
// gives a callback span without a link.
func TestMemoryModeSpansLinkToTheRequest(t *testing.T) {
	tel := newTelemetry(t)
	obs, err := eachhookotel.New(eachhookotel.WithMeterProvider(tel.mp), eachhookotel.WithTracerProvider(tel.tp))
	require.NoError(t, err)
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithObserver(obs), eachhook.WithWorkers(1),
		eachhook.WithRetry(3, time.Millisecond), eachhook.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		if s.ID == "retried" && eachhook.AttemptFromContext(ctx) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	reqCtx, reqSpan := tel.tp.Tracer("test").Start(context.Background(), "POST /webhook", trace.WithSpanKind(trace.SpanKindServer))
	require.Equal(t, 200, serve(h, signed("retried").WithContext(reqCtx)))
	reqSpan.End()
	require.Equal(t, 200, serve(h, signed("untraced")))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, h.Shutdown(ctx))

	request := reqSpan.SpanContext()
	spans := tel.callbackSpans()
	require.Len(t, spans, 4) // one worker: retried's three attempts, then untraced
	for i, s := range spans[:3] {
		require.Contains(t, s.Attributes(), eachhookotel.AttrCallbackAttempt.Int(i+1))
		require.False(t, s.Parent().IsValid(), "a trace of its own")
		require.NotEqual(t, request.TraceID(), s.SpanContext().TraceID())
		require.Len(t, s.Links(), 1)
		require.Equal(t, request, s.Links()[0].SpanContext, "linked to the request's span")
	}
	require.Contains(t, spans[3].Attributes(), eachhookotel.AttrPredictionID.String("untraced"))
	require.False(t, spans[3].Parent().IsValid())
	require.Empty(t, spans[3].Links())
}

// forgetfulQueue is a queue like the durable one as the observer sees
// it: it keeps only a delivery's exported fields, not its request's
// context, and runs each attempt with a context of its own carrying a
// worker span, as River does with otelriver.
type forgetfulQueue struct {
	tracer trace.Tracer
	r      eachhook.Runner
}

func (q *forgetfulQueue) Start(_ context.Context, r eachhook.Runner) error { q.r = r; return nil }
func (q *forgetfulQueue) Shutdown(context.Context) error                   { return nil }

func (q *forgetfulQueue) Enqueue(_ context.Context, d eachhook.Delivery) error {
	stored := eachhook.Delivery{ID: d.ID, Status: d.Status, Body: d.Body, Claim: d.Claim, AcceptedAt: d.AcceptedAt}
	ctx, work := q.tracer.Start(context.Background(), "river.work", trace.WithSpanKind(trace.SpanKindConsumer))
	defer work.End()
	return q.r.Run(ctx, stored, 1)
}

// TestDurableModeSpansAreChildrenOfTheWorkerSpan: with a queue that does
// not keep the request's context, the callback span is a child of the span
// the queue runs it with and links to nothing.
func TestDurableModeSpansAreChildrenOfTheWorkerSpan(t *testing.T) {
	tel := newTelemetry(t)
	obs, err := eachhookotel.New(eachhookotel.WithMeterProvider(tel.mp), eachhookotel.WithTracerProvider(tel.tp))
	require.NoError(t, err)
	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithObserver(obs),
		eachhook.WithQueue(&forgetfulQueue{tracer: tel.tp.Tracer("river")}), eachhook.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	h.OnSuccess(func(context.Context, *eachhook.Success) error { return nil })
	require.NoError(t, h.Start(context.Background()))
	reqCtx, reqSpan := tel.tp.Tracer("test").Start(context.Background(), "POST /webhook", trace.WithSpanKind(trace.SpanKindServer))
	require.Equal(t, 200, serve(h, signed("stored").WithContext(reqCtx)))
	reqSpan.End()
	require.NoError(t, h.Shutdown(context.Background()))

	var work sdktrace.ReadOnlySpan
	for _, s := range tel.spans.Ended() {
		if s.Name() == "river.work" {
			work = s
		}
	}
	require.NotNil(t, work)
	spans := tel.callbackSpans()
	require.Len(t, spans, 1)
	require.Equal(t, work.SpanContext(), spans[0].Parent())
	require.Equal(t, work.SpanContext().TraceID(), spans[0].SpanContext().TraceID())
	require.Empty(t, spans[0].Links())
}

// TestUnknownWaitIsNotRecorded: a first attempt whose wait is unknown adds
// no point to the queue-wait histogram; a known wait of zero does.
func TestUnknownWaitIsNotRecorded(t *testing.T) {
	tel := newTelemetry(t)
	obs, err := eachhookotel.New(eachhookotel.WithMeterProvider(tel.mp), eachhookotel.WithTracerProvider(tel.tp))
	require.NoError(t, err)
	for _, waited := range []time.Duration{observe.WaitUnknown, 0, observe.WaitUnknown} {
		run := observe.CallbackRun{ID: "w", Status: eachhook.StatusSuccess, Attempt: 1, Request: context.Background(), Waited: waited}
		obs.CallbackFinished(obs.CallbackStarted(context.Background(), run), run)
	}
	require.Equal(t, map[string]int64{"eachhook.prediction.status=success": 1}, tel.points(t, eachhookotel.MetricQueueWait))
	require.Len(t, tel.callbackSpans(), 3, "the runs are traced all the same")
}
