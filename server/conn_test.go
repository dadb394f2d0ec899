package server

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"go.uber.org/goleak"
)

// apiTestServer serves h the way Start does (listenAPI, newHTTPServer) on
// a loopback port, without a node, and returns its address.
func apiTestServer(t *testing.T, h *apiHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(h, false, slog.New(slog.DiscardHandler))
	// Close does not wait for connections' goroutines, and net/http
	// lingers up to 500 ms after some refusals (431) so that the client
	// reads the answer before a reset: count them out.
	var conns sync.WaitGroup
	track := srv.ConnState
	srv.ConnState = func(c net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
			conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			conns.Done()
		}
		track(c, state)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(listenAPI(ln)) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
		conns.Wait()
	})
	return ln.Addr().String()
}

// verifyNoLeaks checks, after every cleanup of t (servers included), that
// t left no goroutine behind.
func verifyNoLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// TestHTTPEveryErrorIsJSON walks requests that fail at every layer: those
// net/http refuses before any handler runs (request lines and targets it
// cannot parse, bad headers, unsupported encodings and versions), unknown
// routes and methods, body limits and truncation, a recovered panic. Each
// answer must be the JSON error envelope with a code, a 4xx or 503 status.
func TestHTTPEveryErrorIsJSON(t *testing.T) {
	verifyNoLeaks(t)
	const host = "Host: x\r\n"
	tests := []struct {
		name       string
		raw        string
		closeWrite bool
		panicWith  any
		status     int
		code       string
	}{
		{name: "bad escape in a key", raw: "PUT /v1/kv/bad%ZZ HTTP/1.1\r\n" + host + "Content-Length: 1\r\n\r\n1",
			status: 400, code: api.CodeInvalidKey},
		{name: "lone percent in a key", raw: "GET /v1/kv/% HTTP/1.1\r\n" + host + "\r\n", status: 400, code: api.CodeInvalidKey},
		{name: "truncated escape in a key", raw: "DELETE /v1/kv/a%2 HTTP/1.1\r\n" + host + "\r\n", status: 400, code: api.CodeInvalidKey},
		{name: "raw control character in a key", raw: "GET /v1/kv/a\x01b HTTP/1.1\r\n" + host + "\r\n", status: 400, code: api.CodeInvalidKey},
		{name: "escaped control character in a key", raw: "PUT /v1/kv/a%01b HTTP/1.1\r\n" + host + "Content-Length: 1\r\n\r\n1", status: 400, code: api.CodeInvalidKey},
		{name: "bad escape in a route", raw: "GET /v1/%ZZ HTTP/1.1\r\n" + host + "\r\n", status: 400, code: api.CodeBadRequest},
		{name: "bad escape in the query", raw: "GET /v1/kv?prefix=%zz HTTP/1.1\r\n" + host + "\r\n", status: 400, code: api.CodeBadRequest},
		{name: "leading blank line", raw: "\r\nGET /v1/kv/a HTTP/1.1\r\n" + host + "\r\n", status: 400, code: api.CodeBadRequest},
		{name: "garbage request line", raw: "BLAH\r\n" + host + "\r\n", status: 400, code: api.CodeBadRequest},
		{name: "no version", raw: "GET /v1/status\r\n" + host + "\r\n", status: 400, code: api.CodeBadRequest},
		{name: "unsupported version", raw: "GET /v1/status HTTP/9.9\r\n" + host + "\r\n", status: 400, code: api.CodeBadRequest},
		{name: "missing host", raw: "GET /v1/status HTTP/1.1\r\n\r\n", status: 400, code: api.CodeBadRequest},
		{name: "malformed host", raw: "GET /v1/status HTTP/1.1\r\nHost: a b\r\n\r\n", status: 400, code: api.CodeBadRequest},
		{name: "header without colon", raw: "GET /v1/status HTTP/1.1\r\n" + host + "no colon here\r\n\r\n", status: 400, code: api.CodeBadRequest},
		{name: "bad header name", raw: "GET /v1/status HTTP/1.1\r\n" + host + "Bad\x01Name: v\r\n\r\n", status: 400, code: api.CodeBadRequest},
		{name: "bad content length", raw: "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Content-Length: abc\r\n\r\n", status: 400, code: api.CodeBadRequest},
		{name: "two content lengths", raw: "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Content-Length: 1\r\nContent-Length: 2\r\n\r\n12", status: 400, code: api.CodeBadRequest},
		{name: "unsupported transfer encoding", raw: "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip\r\n\r\n", status: 400, code: api.CodeBadRequest},
		{name: "unsupported expectation", raw: "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Expect: teapot\r\nContent-Length: 1\r\n\r\n1", status: 417, code: api.CodeBadRequest},
		{name: "headers too large", raw: "GET /v1/status HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("h", http.DefaultMaxHeaderBytes+8192) + "\r\n\r\n",
			status: 431, code: api.CodeTooLarge},
		{name: "unknown route", raw: "GET /v1/nothing HTTP/1.1\r\n" + host + "\r\n", status: 404, code: api.CodeNotFound},
		{name: "asterisk target", raw: "GET * HTTP/1.1\r\n" + host + "\r\n", status: 404, code: api.CodeNotFound},
		{name: "connect", raw: "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", status: 404, code: api.CodeNotFound},
		{name: "wrong method", raw: "DELETE /v1/status HTTP/1.1\r\n" + host + "\r\n", status: 405, code: api.CodeMethodNotAllowed},
		{name: "unknown method", raw: "BREW /v1/kv/a HTTP/1.1\r\n" + host + "\r\n", status: 405, code: api.CodeMethodNotAllowed},
		{name: "empty key", raw: "PUT /v1/kv/ HTTP/1.1\r\n" + host + "Content-Length: 1\r\n\r\n1", status: 400, code: api.CodeInvalidKey},
		{name: "declared body too large", raw: "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Content-Length: 100\r\n\r\n",
			status: 413, code: api.CodeTooLarge},
		{name: "chunked body too large", raw: "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n40\r\n" + strings.Repeat("1", 64) + "\r\n0\r\n\r\n",
			status: 413, code: api.CodeTooLarge},
		{name: "truncated body", raw: "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Content-Length: 10\r\n\r\n12", closeWrite: true,
			status: 400, code: api.CodeBadRequest},
		{name: "bad chunk", raw: "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nzz\r\n", status: 400, code: api.CodeBadRequest},
		{name: "invalid json", raw: "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Content-Length: 1\r\n\r\n{", status: 400, code: api.CodeInvalidJSON},
		{name: "recovered panic", raw: "GET /v1/kv/a HTTP/1.1\r\n" + host + "\r\n", panicWith: "boom", status: 503, code: api.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			f.panicWith = tt.panicWith
			h, _ := testHandler(t, f, HTTPOptions{MaxBodyBytes: 16})
			addr := apiTestServer(t, h)
			resp, body := rawRequest(t, addr, tt.raw, tt.closeWrite)
			code, err := checkErrorBody(body)
			if err != nil {
				t.Fatalf("%d: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != tt.status || code != tt.code {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, body, tt.status, tt.code)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("status %d: a 5xx other than 503", resp.StatusCode)
			}
			t.Logf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		})
	}
}

// TestHTTPRefusalAfterAGoodRequest sends a good request and then a refused
// one on one connection: the first answer passes as the handler wrote it,
// the second is rewritten.
func TestHTTPRefusalAfterAGoodRequest(t *testing.T) {
	verifyNoLeaks(t)
	f := newFake()
	h, _ := testHandler(t, f, HTTPOptions{})
	addr := apiTestServer(t, h)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	read := func() (*http.Response, []byte) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	if _, err := io.WriteString(conn, "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n\"HTTP/\""); err != nil {
		t.Fatal(err)
	}
	if resp, body := read(); resp.StatusCode != http.StatusOK || string(body) != `{"revision":1}`+"\n" {
		t.Fatalf("first answer %d %q", resp.StatusCode, body)
	}
	if _, err := io.WriteString(conn, "GET /v1/kv/a HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, body := read(); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"value":"HTTP/"`) {
		t.Fatalf("second answer %d %q", resp.StatusCode, body)
	}
	if _, err := io.WriteString(conn, "GET /v1/kv/%zz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, body := read()
	if code, err := checkErrorBody(body); resp.StatusCode != http.StatusBadRequest || err != nil || code != api.CodeInvalidKey {
		t.Fatalf("refused answer %d %q (%v)", resp.StatusCode, body, err)
	}
}

// FuzzJSONRefusal feeds the rewriting arbitrary responses and request
// lines: whatever it accepts must come out as one HTTP response with the
// JSON error envelope, a 4xx or 503 status, and no panic.
func FuzzJSONRefusal(f *testing.F) {
	const plain = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	f.Add([]byte("HTTP/1.1 400 Bad Request"+plain+"400 Bad Request"), []byte("PUT /v1/kv/bad%ZZ HTTP/1.1\r\n"))
	f.Add([]byte("HTTP/1.1 400 Bad Request: missing required Host header"+plain+"400 Bad Request: missing required Host header"), []byte(nil))
	f.Add([]byte("HTTP/1.1 501 Not Implemented"+plain+"Unsupported transfer encoding"), []byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte("HTTP/1.1 431 Request Header Fields Too Large"+plain+"431 Request Header Fields Too Large"), []byte("GET /v1/kv/a\x01 HTTP/1.1\r\n"))
	f.Add([]byte("HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"), []byte("\x16\x03\x01"))
	f.Add([]byte("HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), []byte("PUT /v1/kv/a HTTP/1.1\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"), []byte("GET /v1/kv/% HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, raw, line []byte) {
		answer, ok := jsonRefusal(raw, line)
		if !ok {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(answer)), nil)
		if err != nil {
			t.Fatalf("answer %q does not parse: %v", answer, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode < 400 || (resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable) {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if resp.Header.Get("Content-Type") != "application/json" || !resp.Close {
			t.Fatalf("headers %v", resp.Header)
		}
		if _, err := checkErrorBody(body); err != nil {
			t.Fatal(err)
		}
	})
}
