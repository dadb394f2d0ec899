package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	colltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
)

// promSample is the value of every series in a Prometheus text exposition,
// keyed by the series as printed (name{labels}).
type promSamples map[string]float64

func scrape(t *testing.T, addr string) promSamples {
	t.Helper()
	r := call(t, http.MethodGet, "http://"+addr+"/metrics", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", r.status, r.body)
	}
	out := promSamples{}
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("bad exposition line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// sum adds the series of metric name whose labels contain every one of
// labels (each `key="value"`).
func (p promSamples) sum(name string, labels ...string) (float64, bool) {
	var total float64
	found := false
	for series, v := range p {
		n, lbls, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(lbls, l)
		}
		if ok {
			total += v
			found = true
		}
	}
	return total, found
}

// has reports whether the metric family name has any series.
func (p promSamples) has(name string) bool {
	for series := range p {
		if n, _, _ := strings.Cut(series, "{"); n == name || n == name+"_count" {
			return true
		}
	}
	return false
}

// metricNames are the series README "Observability" documents.
var metricNames = []string{
	"consensus_proposals_total", "consensus_proposals_failed_total",
	"consensus_entries_committed_total", "consensus_entries_applied_total",
	"consensus_apply_duration_seconds", "consensus_storage_save_duration_seconds",
	"consensus_storage_fsync_duration_seconds",
	"consensus_leader_changes_total", "consensus_term", "consensus_is_leader", "consensus_storage_stalled", "consensus_state_diverged",
	"consensus_commit_index", "consensus_applied_index", "consensus_snapshot_index",
	"consensus_peer_sent_bytes_total", "consensus_peer_received_bytes_total",
	"consensus_peer_messages_sent_total", "consensus_peer_messages_received_total",
	"consensus_peer_connects_total", "consensus_peer_disconnects_total", "consensus_peer_connected",
	"consensus_transport_messages_dropped_total", "consensus_transport_bad_frames_total",
	"consensus_snapshots_total", "consensus_snapshot_duration_seconds", "consensus_snapshot_size_bytes",
	"consensus_cluster_members", "consensus_watches_open", "consensus_watches_ended_total",
	"http_server_request_duration_seconds", "consensus_ws_requests_total",
}

func TestMetricsEndpoint(t *testing.T) {
	const n = 40
	// The assertions hold only while one node leads throughout (no
	// failed proposal, is_leader on the node written to): election
	// timeouts of 1-2 s keep a loaded machine's stalls from electing
	// another leader mid-test, which made it fail once.
	c := newTestClusterWith(t, 3, func(cfg *consensus.Config) {
		cfg.SnapshotThreshold = 10
		cfg.ElectionTimeoutMin, cfg.ElectionTimeoutMax = time.Second, 2*time.Second
	})
	leader := c.waitLeader()
	addr := c.servers[leader].HTTPAddr()
	before := scrape(t, addr)

	for i := range n {
		if r := call(t, http.MethodPut, fmt.Sprintf("http://%s/v1/kv/m%d", addr, i), []byte(`{"i":1}`)); r.status != http.StatusOK {
			t.Fatalf("put %d: %d %s", i, r.status, r.body)
		}
	}
	w := dialWS(t, "ws://"+addr+wsPath)
	if r := w.call(1, api.OpPut, "ws-key", []byte(`1`)); !r.ok {
		t.Fatalf("ws put: %+v", r)
	}

	var after promSamples
	grew := func(name string, by float64, labels ...string) bool {
		b, _ := before.sum(name, labels...)
		a, _ := after.sum(name, labels...)
		return a-b >= by
	}
	// Counters read by callbacks are current at once; give the snapshot
	// writer and the ws counter (recorded after the answer) time.
	testwait.For(t, 10*time.Second, "every metric present, the ws put and snapshot counters grown", func() bool {
		after = scrape(t, addr)
		for _, name := range metricNames {
			if !after.has(name) {
				return false
			}
		}
		return grew("consensus_ws_requests_total", 1, `op="put"`, `code="ok"`) &&
			grew("consensus_snapshots_total", 1, `type="created"`)
	})
	for _, name := range metricNames {
		if !after.has(name) {
			t.Errorf("/metrics has no %s", name)
		}
	}
	for _, name := range []string{"consensus_proposals_total", "consensus_entries_committed_total",
		"consensus_entries_applied_total", "consensus_apply_duration_seconds_count",
		"consensus_storage_save_duration_seconds_count", "consensus_storage_fsync_duration_seconds_count"} {
		if !grew(name, n) {
			b, _ := before.sum(name)
			a, _ := after.sum(name)
			t.Errorf("%s went from %v to %v after %d writes, want +%d", name, b, a, n, n)
		}
	}
	if !grew("http_server_request_duration_seconds_count", n, `http_request_method="PUT"`, `http_route="/v1/kv/{key}"`, `http_response_status_code="200"`) {
		t.Errorf("PUT /v1/kv/{key} 200 latency count did not grow by %d", n)
	}
	if v, _ := after.sum("consensus_proposals_failed_total"); v != 0 {
		t.Errorf("%v failed proposals, want 0", v)
	}
	if v, _ := after.sum("consensus_is_leader"); v != 1 {
		t.Errorf("consensus_is_leader on the leader = %v", v)
	}
	for _, id := range c.ids {
		if id == leader {
			continue
		}
		peer := fmt.Sprintf(`peer=%q`, id)
		if !grew("consensus_peer_sent_bytes_total", 1, peer) || !grew("consensus_peer_received_bytes_total", 1, peer) ||
			!grew("consensus_peer_messages_sent_total", n/10, peer) {
			t.Errorf("traffic with %s did not grow: %v", id, after)
		}
		if v, _ := after.sum("consensus_peer_connects_total", peer); v < 1 {
			t.Errorf("no connect counted to %s", id)
		}
	}
	// A follower applied the writes too.
	for _, id := range c.ids {
		if id != leader {
			f := scrape(t, c.servers[id].HTTPAddr())
			if v, _ := f.sum("consensus_entries_applied_total"); v < n {
				t.Errorf("%s applied %v entries, want at least %d", id, v, n)
			}
			if v, _ := f.sum("consensus_is_leader"); v != 0 {
				t.Errorf("consensus_is_leader on follower %s = %v", id, v)
			}
		}
	}

	// A leader transfer is a leader change on every node.
	changes := map[string]float64{}
	for _, id := range c.ids {
		changes[id], _ = scrape(t, c.servers[id].HTTPAddr()).sum("consensus_leader_changes_total")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.servers[leader].Node().TransferLeadership(ctx); err != nil {
		t.Fatal(err)
	}
	if next := c.waitLeader(); next == leader {
		t.Fatalf("%s still leads after the transfer", leader)
	}
	for _, id := range c.ids {
		testwait.For(t, 10*time.Second, id+" counts the leader change", func() bool {
			v, _ := scrape(t, c.servers[id].HTTPAddr()).sum("consensus_leader_changes_total")
			return v > changes[id]
		})
	}
}

// startTraced starts a one-node server whose spans go to an in-memory
// exporter, and waits until it leads.
func startTraced(t *testing.T) (*Server, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	s := startOne(t, func(c *Config) { c.Telemetry = TelemetryOptions{SpanExporter: exp, NoOTLP: true} })
	return s, exp
}

// spansNamed waits for the exporter to hold a span named name in trace
// tid (any trace if tid is invalid) and returns it.
func spanNamed(t *testing.T, exp *tracetest.InMemoryExporter, name string, tid trace.TraceID) tracetest.SpanStub {
	t.Helper()
	var found tracetest.SpanStub
	testwait.For(t, 5*time.Second, "a span named "+name, func() bool {
		for _, s := range exp.GetSpans() {
			if s.Name == name && (!tid.IsValid() || s.SpanContext.TraceID() == tid) {
				found = s
				return true
			}
		}
		return false
	})
	return found
}

func TestTracePutThroughHTTP(t *testing.T) {
	s, exp := startTraced(t)
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, err := http.NewRequest(http.MethodPut, "http://"+s.HTTPAddr()+"/v1/kv/traced", strings.NewReader(`"v"`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}

	tid, _ := trace.TraceIDFromHex(traceID)
	pid, _ := trace.SpanIDFromHex(parentID)
	httpSpan := spanNamed(t, exp, "PUT /v1/kv/{key}", tid)
	if httpSpan.SpanKind != trace.SpanKindServer {
		t.Errorf("request span kind %v, want server", httpSpan.SpanKind)
	}
	if !httpSpan.Parent.IsRemote() || httpSpan.Parent.SpanID() != pid {
		t.Errorf("request span's parent %v, want the caller's traceparent span %s", httpSpan.Parent, parentID)
	}
	propose := spanNamed(t, exp, "consensus.propose", tid)
	if propose.Parent.SpanID() != httpSpan.SpanContext.SpanID() {
		t.Errorf("propose span's parent %s, want the request span %s", propose.Parent.SpanID(), httpSpan.SpanContext.SpanID())
	}
	checkProposeEvents(t, propose)
	if propose.StartTime.Before(httpSpan.StartTime) || propose.EndTime.After(httpSpan.EndTime) {
		t.Errorf("propose span [%v, %v] not within the request span [%v, %v]",
			propose.StartTime, propose.EndTime, httpSpan.StartTime, httpSpan.EndTime)
	}

	// Without a traceparent the request span is a root; over /v1/ws each
	// request has a span of its own, the proposal its child.
	call(t, http.MethodPut, "http://"+s.HTTPAddr()+"/v1/kv/untraced", []byte(`1`))
	var root tracetest.SpanStub
	testwait.For(t, 5*time.Second, "the untraced request's own root span", func() bool {
		for _, sp := range exp.GetSpans() {
			if sp.Name == "PUT /v1/kv/{key}" && sp.SpanContext.TraceID() != tid {
				root = sp
				return true
			}
		}
		return false
	})
	if root.Parent.IsValid() {
		t.Errorf("request without traceparent has parent %v", root.Parent)
	}
	w := dialWS(t, "ws://"+s.HTTPAddr()+wsPath)
	if r := w.call(1, api.OpPut, "ws-traced", []byte(`2`)); !r.ok {
		t.Fatalf("ws put: %+v", r)
	}
	wsSpan := spanNamed(t, exp, "ws put", trace.TraceID{})
	wsPropose := spanNamed(t, exp, "consensus.propose", wsSpan.SpanContext.TraceID())
	if wsPropose.Parent.SpanID() != wsSpan.SpanContext.SpanID() {
		t.Errorf("ws propose span's parent %s, want the ws request span %s", wsPropose.Parent.SpanID(), wsSpan.SpanContext.SpanID())
	}
	checkProposeEvents(t, wsPropose)
}

// checkProposeEvents checks a propose span has "committed" then "applied",
// in time order, within the span.
func checkProposeEvents(t *testing.T, sp tracetest.SpanStub) {
	t.Helper()
	if len(sp.Events) != 2 || sp.Events[0].Name != "committed" || sp.Events[1].Name != "applied" {
		t.Fatalf("propose span events %+v, want committed then applied", sp.Events)
	}
	c, a := sp.Events[0].Time, sp.Events[1].Time
	if c.Before(sp.StartTime) || a.Before(c) || sp.EndTime.Before(a) {
		t.Errorf("times out of order: start %v committed %v applied %v end %v", sp.StartTime, c, a, sp.EndTime)
	}
}

// otlpCollector is a stand-in OTLP/HTTP collector that decodes what it is
// sent.
type otlpCollector struct {
	mu      sync.Mutex
	metrics []string // metric names received
	spans   []string // span names received
}

func (c *otlpCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch r.URL.Path {
	case "/v1/metrics":
		var req collmetrics.ExportMetricsServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rm := range req.GetResourceMetrics() {
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					c.metrics = append(c.metrics, m.GetName())
				}
			}
		}
		b, _ := proto.Marshal(&collmetrics.ExportMetricsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(b)
	case "/v1/traces":
		var req colltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					c.spans = append(c.spans, s.GetName())
				}
			}
		}
		b, _ := proto.Marshal(&colltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(b)
	default:
		http.NotFound(w, r)
	}
}

func (c *otlpCollector) received() (metrics, spans []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.metrics...), append([]string(nil), c.spans...)
}

func TestOTLPExport(t *testing.T) {
	col := &otlpCollector{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "200") // ms

	s := startOne(t, nil)
	if r := call(t, http.MethodPut, "http://"+s.HTTPAddr()+"/v1/kv/otlp", []byte(`1`)); r.status != http.StatusOK {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	// Metrics are pushed periodically while the node runs.
	testwait.For(t, 10*time.Second, "consensus.proposals pushed to the collector", func() bool {
		m, _ := col.received()
		return contains(m, "consensus.proposals")
	})
	// Close flushes the batched spans.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	metrics, spans := col.received()
	for _, want := range []string{"consensus.proposals", "consensus.apply.duration", "consensus.entries.applied", "http.server.request.duration"} {
		if !contains(metrics, want) {
			t.Errorf("collector got no %s; got %v", want, metrics)
		}
	}
	for _, want := range []string{"PUT /v1/kv/{key}", "consensus.propose"} {
		if !contains(spans, want) {
			t.Errorf("collector got no span %q; got %v", want, spans)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestMetricsNeedATokenWhenAuthIsOn(t *testing.T) {
	tokens, err := ParseTokens(strings.NewReader("rw-token rw\nro-token ro\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := startOne(t, func(c *Config) {
		c.HTTP = HTTPOptions{Tokens: tokens}
		c.Telemetry = TelemetryOptions{NoOTLP: true}
	})
	get := func(token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.HTTPAddr()+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Errorf("GET /metrics without a token: %d, want 401", code)
	}
	if code, body := get("ro-token"); code != http.StatusOK || !strings.Contains(body, "consensus_term ") {
		t.Errorf("GET /metrics with a read-only token: %d %.200s", code, body)
	}
	if r := call(t, http.MethodPost, "http://"+s.HTTPAddr()+"/metrics", nil); r.status != http.StatusUnauthorized && r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d", r.status)
	}
}
