// Package telemetry wires a node's OpenTelemetry metrics and traces: a
// MeterProvider whose instruments are always served as Prometheus text
// (Handler, for GET /metrics) and, when the standard OTEL_EXPORTER_OTLP_*
// environment variables name a collector, also pushed over OTLP/HTTP; and a
// TracerProvider that exists only when spans have somewhere to go (OTLP, or
// an exporter given in Options), so that tracing costs nothing otherwise.
//
// The instruments themselves (names in README "Observability") are made by
// NewNodeObserver, RegisterNode and NewHTTPMetrics.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of every meter and tracer here.
const ScopeName = "github.com/unrdf/consensus"

// ServiceName is the default service.name resource attribute
// (OTEL_SERVICE_NAME overrides it).
const ServiceName = "consensus"

// Options configures New.
type Options struct {
	// NodeID is the node's name, the service.instance.id and
	// consensus.node.id resource attributes.
	NodeID string
	// SpanExporter, if set, receives every ended span synchronously (in
	// addition to OTLP when that is configured); tests pass an in-memory
	// exporter. It turns tracing on.
	SpanExporter sdktrace.SpanExporter
	// NoOTLP ignores the OTEL_EXPORTER_OTLP_* environment: nothing is
	// pushed anywhere.
	NoOTLP bool
	// Logger receives setup and shutdown messages. Nil discards.
	Logger *slog.Logger
}

// Telemetry is one node's metric and trace providers. Shutdown flushes
// and stops them.
type Telemetry struct {
	meterProvider  *sdkmetric.MeterProvider
	tracerProvider *sdktrace.TracerProvider
	meter          metric.Meter
	tracer         trace.Tracer
	handler        http.Handler
	// OTLPMetrics and OTLPTraces report whether OTLP export is on.
	OTLPMetrics, OTLPTraces bool
}

// New builds the providers. OTLP export is on when OTEL_SDK_DISABLED is
// not "true" and OTEL_EXPORTER_OTLP_ENDPOINT, or the signal's own
// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
// is set (and OTEL_METRICS_EXPORTER / OTEL_TRACES_EXPORTER is not "none").
// The exporters read the rest of the standard variables themselves
// (headers, timeout, compression, OTEL_METRIC_EXPORT_INTERVAL,
// OTEL_TRACES_SAMPLER, OTEL_RESOURCE_ATTRIBUTES, ...).
func New(ctx context.Context, opts Options) (*Telemetry, error) {
	// The exporters read the process environment themselves, so the
	// decision to use them reads it too.
	getenv := os.Getenv
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", ServiceName),
			attribute.String("service.instance.id", opts.NodeID),
			attribute.String("consensus.node.id", opts.NodeID),
		),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}

	t := &Telemetry{}
	otlpOn := !opts.NoOTLP && !strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true")
	t.OTLPMetrics = otlpOn && (getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "") &&
		getenv("OTEL_METRICS_EXPORTER") != "none"
	t.OTLPTraces = otlpOn && (getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") &&
		getenv("OTEL_TRACES_EXPORTER") != "none"

	// Each node has a registry of its own, so that several nodes in one
	// process (tests, embedders) do not collide.
	registry := prometheus.NewRegistry()
	promExporter, err := otelprom.New(otelprom.WithRegisterer(registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	t.handler = promhttp.HandlerFor(registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)})
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExporter)}
	if t.OTLPMetrics {
		exp, err := otlpmetrichttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp metrics exporter: %w", err)
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	t.meterProvider = sdkmetric.NewMeterProvider(mopts...)
	t.meter = t.meterProvider.Meter(ScopeName)

	if t.OTLPTraces || opts.SpanExporter != nil {
		topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
		if t.OTLPTraces {
			exp, err := otlptracehttp.New(ctx)
			if err != nil {
				_ = t.meterProvider.Shutdown(ctx)
				return nil, fmt.Errorf("telemetry: otlp trace exporter: %w", err)
			}
			topts = append(topts, sdktrace.WithBatcher(exp))
		}
		if opts.SpanExporter != nil {
			topts = append(topts, sdktrace.WithSyncer(opts.SpanExporter))
		}
		t.tracerProvider = sdktrace.NewTracerProvider(topts...)
		t.tracer = t.tracerProvider.Tracer(ScopeName)
	}
	logger.Info("telemetry", "otlp_metrics", t.OTLPMetrics, "otlp_traces", t.OTLPTraces, "tracing", t.tracer != nil)
	return t, nil
}

// Meter returns the meter every instrument of the node is made from.
func (t *Telemetry) Meter() metric.Meter { return t.meter }

// Tracer returns the node's tracer, or nil when tracing is off (no OTLP
// traces endpoint and no SpanExporter): callers check for nil and skip
// all tracing work.
func (t *Telemetry) Tracer() trace.Tracer { return t.tracer }

// Propagator is the W3C trace-context propagator used to read a caller's
// traceparent header.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Handler serves the metrics as Prometheus text (GET /metrics).
func (t *Telemetry) Handler() http.Handler { return t.handler }

// Shutdown pushes what is pending to OTLP (a last metric collection, the
// spans still batched) and stops the providers, within ctx.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.tracerProvider != nil {
		if err := t.tracerProvider.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: traces: %w", err))
		}
	}
	if err := t.meterProvider.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("telemetry: metrics: %w", err))
	}
	return errors.Join(errs...)
}
