package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/unrdf/consensus/api"
)

// startSingleNode starts a one-node cluster with opts and waits until it
// leads.
func startSingleNode(t *testing.T, opts HTTPOptions) *Server {
	t.Helper()
	return startOne(t, func(c *Config) { c.HTTP = opts })
}

// h2cClient speaks only HTTP/2 over cleartext TCP, with prior knowledge.
func h2cClient(t *testing.T) *http.Client {
	t.Helper()
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protocols}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func TestH2CServesTheJSONAPI(t *testing.T) {
	s := startSingleNode(t, HTTPOptions{MaxBodyBytes: 64})
	base := "http://" + s.HTTPAddr()
	c := h2cClient(t)
	do := func(method, path, body string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 {
			t.Fatalf("%s %s answered over %s, want HTTP/2", method, path, resp.Proto)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: Content-Type %q", method, path, ct)
		}
		return resp, b
	}

	resp, body := do(http.MethodPut, "/v1/kv/workflow:a", `{"step": 1}`)
	if resp.StatusCode != http.StatusOK || string(body) != "{\"revision\":1}\n" {
		t.Fatalf("PUT = %d %s", resp.StatusCode, body)
	}
	resp, body = do(http.MethodGet, "/v1/kv/workflow:a", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET = %d %s", resp.StatusCode, body)
	}
	var item struct {
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(body, &item); err != nil || item.Key != "workflow:a" || string(item.Value) != `{"step":1}` {
		t.Fatalf("GET body %s (%v)", body, err)
	}
	resp, body = do(http.MethodGet, "/v1/status", "")
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"isLeader":true`)) {
		t.Fatalf("status = %d %s", resp.StatusCode, body)
	}
	resp, body = do(http.MethodGet, "/v1/kv/missing", "")
	if code, err := checkErrorBody(body); resp.StatusCode != http.StatusNotFound || err != nil || code != api.CodeKeyNotFound {
		t.Fatalf("GET missing = %d %s", resp.StatusCode, body)
	}
	// A body over the limit is refused as over HTTP/1.1, and the
	// connection keeps serving.
	resp, body = do(http.MethodPut, "/v1/kv/big", strings.Repeat("1", 100))
	if code, err := checkErrorBody(body); resp.StatusCode != http.StatusRequestEntityTooLarge || err != nil || code != api.CodeTooLarge {
		t.Fatalf("PUT too large = %d %s", resp.StatusCode, body)
	}
	resp, body = do(http.MethodGet, "/v1/kv?prefix=workflow:", "")
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"key":"workflow:a"`)) {
		t.Fatalf("list = %d %s", resp.StatusCode, body)
	}
	// /v1/ws needs an HTTP/1.1 upgrade; over HTTP/2 it says so in JSON.
	resp, body = do(http.MethodGet, "/v1/ws", "")
	if code, err := checkErrorBody(body); resp.StatusCode != http.StatusUpgradeRequired || err != nil || code != api.CodeBadRequest {
		t.Fatalf("GET /v1/ws over h2c = %d %s", resp.StatusCode, body)
	}

	// HTTP/1.1 still works on the same port.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	r1, err := (&http.Client{Transport: tr}).Get(base + "/v1/kv/workflow:a")
	if err != nil {
		t.Fatal(err)
	}
	r1.Body.Close()
	if r1.ProtoMajor != 1 || r1.StatusCode != http.StatusOK {
		t.Fatalf("HTTP/1.1 GET = %s %d", r1.Proto, r1.StatusCode)
	}
}
