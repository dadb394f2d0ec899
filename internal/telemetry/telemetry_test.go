package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestOTLPFollowsTheEnvironment(t *testing.T) {
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer collector.Close()
	tests := []struct {
		name            string
		env             map[string]string
		noOTLP          bool
		metrics, traces bool
	}{
		{name: "nothing set", env: nil},
		{name: "endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL}, metrics: true, traces: true},
		{name: "metrics only", env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": collector.URL + "/v1/metrics"}, metrics: true},
		{name: "traces only", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.URL + "/v1/traces"}, traces: true},
		{name: "traces exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL, "OTEL_TRACES_EXPORTER": "none"}, metrics: true},
		{name: "sdk disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL, "OTEL_SDK_DISABLED": "true"}},
		{name: "NoOTLP", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL}, noOTLP: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
				"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_SDK_DISABLED"} {
				t.Setenv(k, tt.env[k])
			}
			tel, err := New(context.Background(), Options{NodeID: "n1", NoOTLP: tt.noOTLP})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := tel.Shutdown(context.Background()); err != nil {
					t.Error(err)
				}
			}()
			if tel.OTLPMetrics != tt.metrics || tel.OTLPTraces != tt.traces {
				t.Errorf("otlp metrics %v traces %v, want %v %v", tel.OTLPMetrics, tel.OTLPTraces, tt.metrics, tt.traces)
			}
			// Tracing costs nothing (a nil tracer) unless spans have
			// somewhere to go.
			if (tel.Tracer() != nil) != tt.traces {
				t.Errorf("tracer %v with traces export %v", tel.Tracer(), tt.traces)
			}
			if tel.Handler() == nil || tel.Meter() == nil {
				t.Error("no Prometheus handler or meter")
			}
		})
	}
}
