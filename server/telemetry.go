package server

import (
	"context"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/telemetry"
	"github.com/unrdf/consensus/transport"
)

// TelemetryOptions configures a node's metrics and traces (README
// "Observability"). The zero value serves Prometheus metrics at /metrics
// and, when the standard OTEL_EXPORTER_OTLP_* environment variables name a
// collector, pushes metrics and traces to it over OTLP/HTTP.
type TelemetryOptions struct {
	// SpanExporter, if set, turns tracing on and receives every ended span
	// synchronously (besides OTLP). Tests pass an in-memory exporter.
	SpanExporter sdktrace.SpanExporter
	// NoOTLP ignores the OTEL_EXPORTER_OTLP_* environment.
	NoOTLP bool
}

// metricsPath serves the node's metrics as Prometheus text.
const metricsPath = "/metrics"

// apiTelemetry is what the handler records requests with; nil fields are
// off (NewHandler alone has none of it; Start sets it).
type apiTelemetry struct {
	metrics *telemetry.HTTPMetrics
	// tracer is nil unless tracing is on.
	tracer trace.Tracer
	// prometheus serves /metrics.
	prometheus http.Handler
}

// startTelemetry builds the node's providers and the handler's
// instruments; the node's own instruments are registered once it runs
// (registerNodeTelemetry).
func (s *Server) startTelemetry(cfg *Config) error {
	tel, err := telemetry.New(context.Background(), telemetry.Options{
		NodeID:       cfg.Node.ID,
		SpanExporter: cfg.Telemetry.SpanExporter,
		NoOTLP:       cfg.Telemetry.NoOTLP,
		Logger:       s.log,
	})
	if err != nil {
		return err
	}
	s.telemetry = tel
	if cfg.Node.Observer == nil {
		obs, err := tel.NewNodeObserver()
		if err != nil {
			return err
		}
		cfg.Node.Observer = obs
	}
	if cfg.Node.Tracer == nil {
		cfg.Node.Tracer = tel.Tracer()
	}
	return nil
}

// peerStatser is the part of transport.WebSocket that peer metrics read.
type peerStatser interface {
	PeerStats() []transport.PeerStats
	Stats() transport.Stats
}

func (s *Server) registerNodeTelemetry() error {
	src := telemetry.Sources{
		Node:         s.node,
		Cluster:      s.cluster,
		WatchesOpen:  s.api.watches.open,
		WatchesEnded: s.api.watches.ended,
		Diverged:     func() bool { return s.store.Diverged() != nil },
	}
	// A transport of Config.PeerTransport may have no peer counters.
	if ps, ok := s.transport.(peerStatser); ok {
		src.Transport = ps
	}
	if _, err := s.telemetry.RegisterNode(src); err != nil {
		return err
	}
	hm, err := s.telemetry.NewHTTPMetrics()
	if err != nil {
		return err
	}
	s.api.tel = apiTelemetry{metrics: hm, tracer: s.telemetry.Tracer(), prometheus: s.telemetry.Handler()}
	return nil
}

// routeOf maps a request path to its route template, so metrics and span
// names never carry a key or an id.
func routeOf(path string) string {
	switch {
	case strings.HasPrefix(path, kvPrefix):
		return "/v1/kv/{key}"
	case strings.HasPrefix(path, workflowsPath+"/"):
		if strings.HasSuffix(path, "/stop") {
			return "/v1/workflows/{id}/stop"
		}
		return "/v1/workflows/{id}"
	case strings.HasPrefix(path, nodesPath+"/"):
		return "/v1/nodes/{id}"
	case strings.HasPrefix(path, membersPrefix):
		rest := path[len(membersPrefix):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			return "/v1/members/{id}" + rest[i:]
		}
		return "/v1/members/{id}"
	case strings.HasPrefix(path, clusterNodesPath+"/"):
		return "/v1/cluster/nodes/{id}"
	case strings.HasPrefix(path, locksPath+"/"):
		return "/v1/locks/{name}"
	case strings.HasPrefix(path, electionsPath+"/"):
		if strings.HasSuffix(path, "/observe") {
			return "/v1/elections/{name}/observe"
		}
		return "/v1/elections/{name}"
	case strings.HasPrefix(path, queuesPath+"/"):
		return queueRoute(path)
	case strings.HasPrefix(path, schedulesPath+"/"):
		return scheduleRoute(path)
	case strings.HasPrefix(path, leasesPath+"/"):
		if strings.HasSuffix(path, "/keepalive") {
			return "/v1/leases/{id}/keepalive"
		}
		return "/v1/leases/{id}"
	}
	switch path {
	case "/v1/status", "/v1/kv", "/healthz", "/readyz", metricsPath, wsPath, watchPath,
		workflowsPath, nodesPath, txnPath, statsPath, membersPath, leaderTransferPath,
		clusterNodesPath, clusterStatsPath, overviewPath, leasesPath, schedulesPath:
		return path
	}
	return "other"
}

// methodLabel keeps the method label to a fixed set.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete:
		return m
	}
	return "other"
}

// traceRequest starts the server span of r, a child of the caller's
// traceparent if it sent one. A /v1/ws upgrade gets no span of its own
// (the connection lives long); its requests' spans are children of the
// caller's traceparent instead. It returns r unchanged and a nil span when
// tracing is off.
func (h *apiHandler) traceRequest(r *http.Request, route string) (*http.Request, trace.Span) {
	if h.tel.tracer == nil {
		return r, nil
	}
	ctx := h.tel.propagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	if route == wsPath {
		return r.WithContext(ctx), nil
	}
	method := methodLabel(r.Method)
	ctx, span := h.tel.tracer.Start(ctx, method+" "+route,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", method),
			attribute.String("http.route", route),
			attribute.String("url.path", r.URL.EscapedPath())))
	return r.WithContext(ctx), span
}

func (t *apiTelemetry) propagator() propagation.TextMapPropagator { return telemetry.Propagator }

// endRequest records the request's latency and ends its span.
func (h *apiHandler) endRequest(r *http.Request, route string, span trace.Span, rw *statusWriter, start time.Time) {
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	if span != nil {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		span.End()
	}
	took := time.Since(start)
	if h.tel.metrics != nil && route != wsPath && route != watchPath {
		h.tel.metrics.Request(r.Context(), methodLabel(r.Method), route, status, took)
	}
	if write, ok := httpRequestKind(r.Method, route); ok {
		h.requests.record(write, status, took)
	}
}

// wsOpNames names the /v1/ws operations for metrics and spans.
var wsOpNames = [...]string{
	api.OpPut: "put", api.OpGet: "get", api.OpDelete: "delete", api.OpList: "list", api.OpStatus: "status",
	api.OpTxn: "txn", api.OpWorkflowStart: "workflow_start", api.OpWorkflowStop: "workflow_stop",
	api.OpWorkflowUpdate: "workflow_update", api.OpWorkflowGet: "workflow_get", api.OpWorkflowList: "workflow_list",
	api.OpNodeRegister: "node_register", api.OpNodeDeregister: "node_deregister", api.OpNodeList: "node_list",
}

func wsOpName(op api.Op) string {
	if op.Known() && int(op) < len(wsOpNames) {
		return wsOpNames[op]
	}
	return "unknown"
}

// wsExecuteObserved is wsExecute under a span (when tracing is on) and
// counted by op and result.
func (h *apiHandler) wsExecuteObserved(connCtx context.Context, req api.Request) (api.Response, *apiError) {
	if h.tel.tracer == nil && h.tel.metrics == nil {
		return h.wsExecute(connCtx, req)
	}
	op := wsOpName(req.Op)
	start := time.Now()
	ctx := connCtx
	var span trace.Span
	if h.tel.tracer != nil {
		ctx, span = h.tel.tracer.Start(ctx, "ws "+op, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("consensus.ws.op", op)))
	}
	result, e := h.wsExecute(ctx, req)
	code := "ok"
	if e != nil {
		code = e.code
	}
	if span != nil {
		if e != nil {
			span.SetStatus(codes.Error, e.code)
		}
		span.End()
	}
	if h.tel.metrics != nil {
		h.tel.metrics.WSRequest(ctx, op, code)
	}
	if write, ok := wsOpIsWrite(req.Op); ok {
		h.requests.record(write, wsErrorStatus(e), time.Since(start))
	}
	return result, e
}
