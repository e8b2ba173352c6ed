// Package eachhookotel reports what an [eachhook.Handler] does through
// OpenTelemetry: counters of deliveries by outcome and refusal reason, a
// histogram of callback durations, the depth of the queue, and a span for
// each callback run. The README says how that span relates to the
// request's span in each mode.
//
//	obs, err := eachhookotel.New() // the global meter and tracer providers
//	if err != nil { ... }
//	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithObserver(obs))
//
// The metric, span and attribute names are the constants of this package;
// the README lists them with their Prometheus names.
package eachhookotel

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/observe"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the meter and the tracer.
const ScopeName = "github.com/eachhook/eachhook/eachhookotel"

// Metric names.
const (
	// MetricDeliveriesReceived counts requests to the webhook endpoint by
	// [AttrDeliveryOutcome], [AttrRefusalReason] (refused only) and
	// [AttrPredictionStatus] (verified deliveries only). Counter, {delivery}.
	MetricDeliveriesReceived = "eachhook.deliveries.received"
	// MetricDeliveriesGivenUp counts accepted deliveries whose callback
	// will not run again, by [AttrPredictionStatus] and [AttrGiveUpReason].
	// Counter, {delivery}.
	MetricDeliveriesGivenUp = "eachhook.deliveries.given_up"
	// MetricCallbackDuration is the duration of each callback run, by
	// [AttrPredictionStatus] and [AttrCallbackOutcome]. Histogram, seconds.
	MetricCallbackDuration = "eachhook.callback.duration"
	// MetricQueueWait is how long each accepted delivery waited between
	// its acceptance (the 200; for a durable queue, its job's insert) and
	// the start of its first attempt, by [AttrPredictionStatus]. A
	// delivery whose wait is unknown ([observe.WaitUnknown]: its queue did
	// not say when it accepted it) is not recorded. Histogram, seconds.
	MetricQueueWait = "eachhook.queue.wait"
	// MetricQueueDepth is the number of accepted deliveries waiting for a
	// worker. UpDownCounter, {delivery}.
	MetricQueueDepth = "eachhook.queue.depth"
	// MetricQueueCapacity is how many deliveries the queue holds
	// (eachhook.WithQueueSize), once the Handler has queued one. Gauge,
	// {delivery}.
	MetricQueueCapacity = "eachhook.queue.capacity"
)

// SpanCallback is the name of the span of each callback run. Its kind is
// consumer; its parent is the span in the context the queue runs the
// callback with, if any. It links to the span of the request that
// delivered the prediction when the queue kept that request's context
// (the in-memory queue does, a durable queue does not) and the request
// had a span (for example from otelhttp).
const SpanCallback = "eachhook.callback"

// Attribute keys.
const (
	// AttrDeliveryOutcome is accepted, duplicate, ignored or refused. It
	// is also set on the request's span.
	AttrDeliveryOutcome = attribute.Key("eachhook.delivery.outcome")
	// AttrRefusalReason is an observe.Reason, such as signature or
	// queue_full. It is also set on the request's span.
	AttrRefusalReason = attribute.Key("eachhook.refusal.reason")
	// AttrPredictionStatus is success or failed; on metrics any other
	// status is reported as other, to bound cardinality.
	AttrPredictionStatus = attribute.Key("eachhook.prediction.status")
	// AttrPredictionID is the prediction id: on spans only.
	AttrPredictionID = attribute.Key("eachhook.prediction.id")
	// AttrCallbackAttempt is the attempt number, 1 for the first run: on
	// spans only.
	AttrCallbackAttempt = attribute.Key("eachhook.callback.attempt")
	// AttrCallbackOutcome is ok, error or panic.
	AttrCallbackOutcome = attribute.Key("eachhook.callback.outcome")
	// AttrGiveUpReason is failed (every attempt failed, or shutdown
	// stopped the retries) or not_run (shutdown dropped it unstarted).
	AttrGiveUpReason = attribute.Key("eachhook.give_up.reason")
	// AttrErrorType is the semantic-convention error.type of a failed
	// callback span: "panic" or the Go type of the error.
	AttrErrorType = attribute.Key("error.type")
)

// Attribute values.
const (
	OutcomeAccepted  = "accepted"
	OutcomeDuplicate = "duplicate"
	OutcomeIgnored   = "ignored"
	OutcomeRefused   = "refused"

	CallbackOK    = "ok"
	CallbackError = "error"
	CallbackPanic = "panic"

	GiveUpFailed = "failed"
	GiveUpNotRun = "not_run"

	// StatusOther stands for every prediction status other than success
	// and failed on metrics.
	StatusOther = "other"
)

// ErrInvalidOption is matched by every error [New] returns for an option
// that cannot work, such as a nil provider.
var ErrInvalidOption = errors.New("eachhookotel: invalid option")

// Option configures [New]. Options are applied in order; a later option
// overrides an earlier one of the same kind, except [WithAttributes], whose
// attributes accumulate.
type Option func(*config) error

type config struct {
	mp    metric.MeterProvider
	tp    trace.TracerProvider
	attrs []attribute.KeyValue
}

// WithMeterProvider sets the meter provider; a nil mp is an error. Default:
// otel.GetMeterProvider at the time New runs.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp == nil {
			return fmt.Errorf("%w: nil meter provider", ErrInvalidOption)
		}
		c.mp = mp
		return nil
	}
}

// WithTracerProvider sets the tracer provider; a nil tp is an error.
// Default: otel.GetTracerProvider at the time New runs.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error {
		if tp == nil {
			return fmt.Errorf("%w: nil tracer provider", ErrInvalidOption)
		}
		c.tp = tp
		return nil
	}
}

// WithAttributes adds attrs to every metric and span, for example to tell
// apart two Handlers in one process (give each its own observer). Keep
// their cardinality low; an attribute with an empty key is an error.
// Default: none.
func WithAttributes(attrs ...attribute.KeyValue) Option {
	return func(c *config) error {
		for _, a := range attrs {
			if !a.Valid() {
				return fmt.Errorf("%w: attribute with an empty key", ErrInvalidOption)
			}
		}
		c.attrs = append(c.attrs, attrs...)
		return nil
	}
}

// Every refusal reason, for precomputing attribute sets.
var reasons = observe.Reasons

// statuses are the values of AttrPredictionStatus on metrics.
var statuses = []string{eachhook.StatusSuccess, eachhook.StatusFailed, StatusOther}

func statusIndex(status string) int {
	switch status {
	case eachhook.StatusSuccess:
		return 0
	case eachhook.StatusFailed:
		return 1
	}
	return 2
}

// observer holds the instruments and the attribute sets, computed once so
// that recording allocates nothing.
type observer struct {
	tracer   trace.Tracer
	attrs    []attribute.KeyValue
	received metric.Int64Counter
	givenUp  metric.Int64Counter
	duration metric.Float64Histogram
	wait     metric.Float64Histogram
	depth    metric.Int64UpDownCounter
	capacity atomic.Int64

	refused   map[observe.Reason]metric.MeasurementOption
	delivered [3][3]metric.MeasurementOption // [outcome][status]: accepted, duplicate, ignored
	ran       [3][3]metric.MeasurementOption // [status][ok, error, panic]
	gaveUp    [3][2]metric.MeasurementOption // [status][failed, not_run]
	waited    [3]metric.MeasurementOption    // [status]
	plain     metric.MeasurementOption
}

// New returns an observe.Observer that records through OpenTelemetry, to
// install with eachhook.WithObserver. It fails with an error matching
// [ErrInvalidOption] for an option that cannot work, and otherwise only if
// an instrument cannot be created.
func New(opts ...Option) (observe.Observer, error) {
	c := config{}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return observe.Observer{}, err
		}
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	o := &observer{tracer: c.tp.Tracer(ScopeName), attrs: c.attrs}
	if err := o.instruments(c.mp.Meter(ScopeName)); err != nil {
		return observe.Observer{}, err
	}
	o.attributeSets()
	return observe.Observer{
		Refused:          o.onRefused,
		Duplicate:        func(ctx context.Context, d observe.DeliveryInfo) { o.delivery(ctx, 1, OutcomeDuplicate, d) },
		Ignored:          func(ctx context.Context, d observe.DeliveryInfo) { o.delivery(ctx, 2, OutcomeIgnored, d) },
		Accepted:         func(ctx context.Context, d observe.DeliveryInfo) { o.delivery(ctx, 0, OutcomeAccepted, d) },
		CallbackStarted:  o.onCallbackStarted,
		CallbackFinished: o.onCallbackFinished,
		GaveUp:           o.onGaveUp,
		QueueChanged:     o.onQueueChanged,
	}, nil
}

func (o *observer) instruments(m metric.Meter) error {
	var err, e error
	o.received, e = m.Int64Counter(MetricDeliveriesReceived, metric.WithUnit("{delivery}"),
		metric.WithDescription("Requests to the webhook endpoint, by outcome and refusal reason."))
	err = errors.Join(err, e)
	o.givenUp, e = m.Int64Counter(MetricDeliveriesGivenUp, metric.WithUnit("{delivery}"),
		metric.WithDescription("Accepted deliveries whose callback will not run again."))
	err = errors.Join(err, e)
	o.duration, e = m.Float64Histogram(MetricCallbackDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of each callback run."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
	err = errors.Join(err, e)
	o.wait, e = m.Float64Histogram(MetricQueueWait, metric.WithUnit("s"),
		metric.WithDescription("Wait of each accepted delivery before its first attempt."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900))
	err = errors.Join(err, e)
	o.depth, e = m.Int64UpDownCounter(MetricQueueDepth, metric.WithUnit("{delivery}"),
		metric.WithDescription("Accepted deliveries waiting for a worker."))
	err = errors.Join(err, e)
	_, e = m.Int64ObservableGauge(MetricQueueCapacity, metric.WithUnit("{delivery}"),
		metric.WithDescription("Deliveries the queue holds."),
		metric.WithInt64Callback(func(_ context.Context, obs metric.Int64Observer) error {
			if n := o.capacity.Load(); n > 0 {
				obs.Observe(n, o.plain)
			}
			return nil
		}))
	err = errors.Join(err, e)
	if err != nil {
		return fmt.Errorf("eachhookotel: %w", err)
	}
	return nil
}

func (o *observer) set(kv ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(append(kv, o.attrs...)...))
}

func (o *observer) attributeSets() {
	o.plain = o.set()
	o.refused = make(map[observe.Reason]metric.MeasurementOption, len(reasons))
	for _, r := range reasons {
		o.refused[r] = o.set(AttrDeliveryOutcome.String(OutcomeRefused), AttrRefusalReason.String(string(r)))
	}
	for i, outcome := range []string{OutcomeAccepted, OutcomeDuplicate, OutcomeIgnored} {
		for j, s := range statuses {
			o.delivered[i][j] = o.set(AttrDeliveryOutcome.String(outcome), AttrPredictionStatus.String(s))
		}
	}
	for i, s := range statuses {
		for j, outcome := range []string{CallbackOK, CallbackError, CallbackPanic} {
			o.ran[i][j] = o.set(AttrPredictionStatus.String(s), AttrCallbackOutcome.String(outcome))
		}
		o.waited[i] = o.set(AttrPredictionStatus.String(s))
		for j, reason := range []string{GiveUpFailed, GiveUpNotRun} {
			o.gaveUp[i][j] = o.set(AttrPredictionStatus.String(s), AttrGiveUpReason.String(reason))
		}
	}
}

func (o *observer) onRefused(ctx context.Context, r observe.Refusal) {
	set, ok := o.refused[r.Reason]
	if !ok { // a reason added to eachhook after this package was built
		set = o.set(AttrDeliveryOutcome.String(OutcomeRefused), AttrRefusalReason.String(string(r.Reason)))
	}
	o.received.Add(ctx, 1, set)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(AttrDeliveryOutcome.String(OutcomeRefused), AttrRefusalReason.String(string(r.Reason)))
	}
}

func (o *observer) delivery(ctx context.Context, outcome int, name string, d observe.DeliveryInfo) {
	o.received.Add(ctx, 1, o.delivered[outcome][statusIndex(d.Status)])
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(AttrDeliveryOutcome.String(name), AttrPredictionID.String(d.ID), AttrPredictionStatus.String(d.Status))
	}
}

func (o *observer) onCallbackStarted(ctx context.Context, run observe.CallbackRun) context.Context {
	if run.Attempt == 1 && run.Waited >= 0 { // not observe.WaitUnknown
		o.wait.Record(ctx, run.Waited.Seconds(), o.waited[statusIndex(run.Status)])
	}
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(AttrPredictionID.String(run.ID), AttrPredictionStatus.String(run.Status), AttrCallbackAttempt.Int(run.Attempt)),
	}
	if len(o.attrs) > 0 {
		opts = append(opts, trace.WithAttributes(o.attrs...))
	}
	if sc := trace.SpanContextFromContext(run.Request); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	ctx, _ = o.tracer.Start(ctx, SpanCallback, opts...)
	return ctx
}

func (o *observer) onCallbackFinished(ctx context.Context, run observe.CallbackRun) {
	outcome := 0
	switch {
	case run.Err == nil:
	case errors.Is(run.Err, eachhook.ErrCallbackPanic):
		outcome = 2
	default:
		outcome = 1
	}
	o.duration.Record(ctx, run.Duration.Seconds(), o.ran[statusIndex(run.Status)][outcome])
	span := trace.SpanFromContext(ctx)
	if run.Err != nil {
		errType := CallbackPanic
		if outcome == 1 {
			errType = fmt.Sprintf("%T", run.Err)
		}
		span.RecordError(run.Err)
		span.SetStatus(codes.Error, run.Err.Error())
		span.SetAttributes(AttrErrorType.String(errType))
	}
	span.End()
}

func (o *observer) onGaveUp(ctx context.Context, d observe.DeliveryInfo, _ int, err error) {
	reason := 0
	if errors.Is(err, observe.ErrNotRun) {
		reason = 1
	}
	o.givenUp.Add(ctx, 1, o.gaveUp[statusIndex(d.Status)][reason])
}

func (o *observer) onQueueChanged(delta, capacity int) {
	o.capacity.Store(int64(capacity))
	o.depth.Add(context.Background(), int64(delta), o.plain)
}
