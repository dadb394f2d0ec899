package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/certs"
)

const tokenFile = `
# operators
s3cret-rw rw
r3ad-only ro
`

func testTokens(t *testing.T) *Tokens {
	t.Helper()
	tok, err := ParseTokens(strings.NewReader(tokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func do(t *testing.T, h http.Handler, method, path, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var body errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %q: %v", w.Body.String(), err)
	}
	return body.Error.Code
}

func TestParseTokens(t *testing.T) {
	tok := testTokens(t)
	if tok.Lookup("s3cret-rw") != RoleReadWrite || tok.Lookup("r3ad-only") != RoleReadOnly || tok.Lookup("nope") != RoleNone || tok.Lookup("") != RoleNone {
		t.Fatal("Lookup gave the wrong roles")
	}
	for _, bad := range []string{"Zq9secret admin\n", "Zq9secret\n", "# only comments\n", "Zq9secret b c\n"} {
		_, err := ParseTokens(strings.NewReader(bad))
		if err == nil {
			t.Errorf("ParseTokens(%q) accepted it", bad)
			continue
		}
		if strings.Contains(err.Error(), "Zq9secret") {
			t.Errorf("error %q echoes a token", err)
		}
	}
}

func TestAuthStatuses(t *testing.T) {
	h := NewHandler(newFake(), HTTPOptions{Tokens: testTokens(t)})
	cases := []struct {
		method, path, token, body string
		status                    int
		code                      string
	}{
		{"GET", "/v1/status", "", "", 401, api.CodeUnauthorized},
		{"GET", "/v1/kv/a", "wrong", "", 401, api.CodeUnauthorized},
		{"PUT", "/v1/kv/a", "", "1", 401, api.CodeUnauthorized},
		{"PUT", "/v1/kv/a", "r3ad-only", "1", 403, api.CodeForbidden},
		{"DELETE", "/v1/kv/a", "r3ad-only", "", 403, api.CodeForbidden},
		{"PUT", "/v1/kv/a", "s3cret-rw", "1", 200, ""},
		{"GET", "/v1/kv/a", "r3ad-only", "", 200, ""},
		{"GET", "/v1/kv?prefix=", "r3ad-only", "", 200, ""},
		{"GET", "/healthz", "", "", 200, ""},
	}
	for _, c := range cases {
		w := do(t, h, c.method, c.path, c.token, c.body)
		if w.Code != c.status {
			t.Errorf("%s %s token %q: status %d, want %d (%s)", c.method, c.path, c.token, w.Code, c.status, w.Body)
			continue
		}
		if c.code != "" && errorCode(t, w) != c.code {
			t.Errorf("%s %s: code %q, want %q", c.method, c.path, errorCode(t, w), c.code)
		}
		if c.status == 401 && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: 401 without WWW-Authenticate", c.method, c.path)
		}
	}
}

func TestWSRoles(t *testing.T) {
	srv := httptest.NewServer(NewHandler(newFake(), HTTPOptions{Tokens: testTokens(t)}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + wsPath
	_, resp, err := websocket.Dial(ctx, url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("ws without token: err %v, resp %v; want 401", err, resp)
	}
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer r3ad-only"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	conn := &wsTestConn{t: t, c: c}
	if r := conn.call(uint64(7), api.OpPut, "k", []byte("1")); r.ok || r.code != api.CodeForbidden {
		t.Errorf("read-only put over ws: %+v, want forbidden", r)
	}
	if r := conn.call(uint64(8), api.OpGet, "k"); r.ok || r.code != api.CodeKeyNotFound {
		t.Errorf("read-only get over ws: %+v, want key_not_found (reads allowed)", r)
	}
	// A keepalive changes the leader's lease clock: a POST over HTTP.
	if r := conn.call(uint64(9), api.OpLeaseKeepAlive, 5); r.ok || r.code != api.CodeForbidden {
		t.Errorf("read-only keepalive over ws: %+v, want forbidden", r)
	}
	if r := conn.call(uint64(10), api.OpLeaseTTL, 5); r.code == api.CodeForbidden {
		t.Errorf("read-only lease ttl over ws: %+v, want it allowed", r)
	}
}

func TestRateLimitPerClient(t *testing.T) {
	h := NewHandler(newFake(), HTTPOptions{Tokens: testTokens(t), RateLimit: 0.001, RateBurst: 2})
	for i := range 2 {
		if w := do(t, h, "GET", "/v1/kv?prefix=", "s3cret-rw", ""); w.Code != 200 {
			t.Fatalf("request %d within burst: %d", i, w.Code)
		}
	}
	w := do(t, h, "GET", "/v1/kv?prefix=", "s3cret-rw", "")
	if w.Code != http.StatusTooManyRequests || errorCode(t, w) != api.CodeRateLimited || w.Header().Get("Retry-After") == "" {
		t.Fatalf("over the limit: %d %s Retry-After %q", w.Code, w.Body, w.Header().Get("Retry-After"))
	}
	// Another client is not held back, and probes never are.
	if w := do(t, h, "GET", "/v1/kv?prefix=", "r3ad-only", ""); w.Code != 200 {
		t.Fatalf("other client: %d", w.Code)
	}
	if w := do(t, h, "GET", "/healthz", "", ""); w.Code != 200 {
		t.Fatalf("healthz under rate limit: %d", w.Code)
	}
}

func TestMaxInFlight(t *testing.T) {
	f := newFake()
	f.block = true
	h := NewHandler(f, HTTPOptions{MaxInFlight: 1, RequestTimeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := httptest.NewRequestWithContext(ctx, "GET", "/v1/kv/a", nil)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		calls := f.calls
		f.mu.Unlock()
		if calls == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first request never reached the backend")
		}
		time.Sleep(time.Millisecond)
	}
	w := do(t, h, "GET", "/v1/kv/b", "", "")
	if w.Code != http.StatusServiceUnavailable || errorCode(t, w) != api.CodeOverloaded || w.Header().Get("Retry-After") == "" {
		t.Fatalf("second request: %d %s", w.Code, w.Body)
	}
	cancel()
	wg.Wait()
	f.mu.Lock()
	f.block = false
	f.mu.Unlock()
	if w := do(t, h, "GET", "/v1/kv?prefix=", "", ""); w.Code != 200 {
		t.Fatalf("after the slot freed: %d", w.Code)
	}
}

// startSingle runs a one-node server with the given HTTP options and TLS.
func startSingle(t *testing.T, opts HTTPOptions, httpTLS *tls.Config) *Server {
	t.Helper()
	return startOne(t, func(c *Config) { c.HTTP, c.HTTPTLS = opts, httpTLS })
}

func TestSlowClientsAreCutOff(t *testing.T) {
	s := startSingle(t, HTTPOptions{ReadHeaderTimeout: 200 * time.Millisecond, BodyReadTimeout: 200 * time.Millisecond}, nil)
	for name, partial := range map[string]string{
		"headers": "GET /v1/status HTTP/1.1\r\nHost: x\r\n",
		"body":    "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"slow\":",
	} {
		conn, err := net.Dial("tcp", s.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, partial); err != nil {
			t.Fatal(err)
		}
		// The server must give up on its own; the test's own deadline only
		// bounds a broken server.
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		_, err = io.ReadAll(bufio.NewReader(conn))
		conn.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: server held a slow client's connection for %v", name, time.Since(start))
		}
	}
}

func TestHTTPOverTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := certs.WriteDev(dir, []string{"n1", "client"}); err != nil {
		t.Fatal(err)
	}
	srvTLS, err := certs.ServerConfig(filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem"), filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	s := startSingle(t, HTTPOptions{}, srvTLS)
	plain := &http.Client{Timeout: 5 * time.Second}
	resp, err := plain.Get("http://" + s.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatalf("plain HTTP on the TLS port: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// net/http's own answer to plain HTTP, rewritten as the API's JSON.
	if code, err := checkErrorBody(body); resp.StatusCode != http.StatusBadRequest || err != nil || code != api.CodeBadRequest {
		t.Fatalf("plain HTTP on the TLS port: %d %s (%v), want 400 bad_request JSON", resp.StatusCode, body, err)
	}
	// Its message is the one clients recognise (client.IsHTTPSAnswer).
	if !strings.Contains(string(body), api.HTTPSRequiredMessage) {
		t.Fatalf("plain HTTP on the TLS port: %s, want the message %q", body, api.HTTPSRequiredMessage)
	}
	noCert, err := certs.ClientConfig("", "", filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: noCert}}
	if resp, err := c.Get("https://" + s.HTTPAddr() + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("client without a certificate was served although client-ca is set")
	}
	withCert, err := certs.ClientConfig(filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem"), filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: withCert, ForceAttemptHTTP2: true}}
	resp, err = c.Get("https://" + s.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("healthz over TLS: %d over %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
	}
}

func TestStartFailsCleanly(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	peerLn, httpLn := listenAgain(t, "127.0.0.1:0"), listenAgain(t, "127.0.0.1:0")
	_, err := Start(Config{
		Node:         consensus.DefaultConfig("n1"),
		PeerListener: peerLn,
		HTTPListener: httpLn,
		DataDir:      notADir,
	})
	if err == nil {
		t.Fatal("Start on a data path that is a file succeeded")
	}
	// The listeners were released: the ports can be taken again.
	for _, addr := range []string{peerLn.Addr().String(), httpLn.Addr().String()} {
		ln := listenAgain(t, addr)
		ln.Close()
	}
}

func TestErrorMessagesAreNotHTMLEscaped(t *testing.T) {
	h := NewHandler(newFake(), HTTPOptions{Tokens: testTokens(t)})
	w := do(t, h, "GET", "/v1/status", "", "")
	if !strings.Contains(w.Body.String(), "Bearer <token>") {
		t.Fatalf("401 body %q does not say Bearer <token> literally", w.Body.String())
	}
}
