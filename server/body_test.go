package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"go.uber.org/goleak"
)

// rawRequest sends raw on a new connection to addr, closes the write side
// when closeWrite is set (the client will send nothing more), and returns
// the response, its body, and how the connection ended.
func rawRequest(t *testing.T, addr, raw string, closeWrite bool) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Bounds a broken server only; a correct one answers at once.
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: reading the response: %v", raw, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%q: reading the response body: %v", raw, err)
	}
	return resp, body
}

// TestHTTPTruncatedBody sends bodies that end before they should and then
// closes the client's write side. net/http cancels the request's context
// on that read error; the answer must still be the client's error, 400
// bad_request, not 503 canceled.
func TestHTTPTruncatedBody(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := newFake()
	h, _ := testHandler(t, f, HTTPOptions{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, raw := range []string{
		"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":",
		"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n",
		"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":",
		"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"POST /v1/txn HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ops\":",
		"POST /v1/workflows HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"id\":",
	} {
		resp, body := rawRequest(t, srv.Listener.Addr().String(), raw, true)
		code, err := checkErrorBody(body)
		if resp.StatusCode != http.StatusBadRequest || err != nil || code != api.CodeBadRequest {
			t.Errorf("%q: %d %s (%v), want 400 bad_request", raw, resp.StatusCode, body, err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%q: Content-Type %q", raw, ct)
		}
	}
	if f.calls != 0 {
		t.Errorf("the backend was called %d time(s) for truncated bodies", f.calls)
	}
}

// erroringBody yields some bytes, then fails, the way a request body does
// when its connection breaks.
type erroringBody struct{ read bool }

func (b *erroringBody) Read(p []byte) (int, error) {
	if !b.read {
		b.read = true
		return copy(p, `{"a":`), nil
	}
	return 0, io.ErrUnexpectedEOF
}

func (b *erroringBody) Close() error { return nil }

// timeoutError is the error a read past a deadline returns.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// TestHTTPBodyReadErrors maps body read errors without a connection: a
// broken body with the request's context canceled (as net/http does) is
// 400; the server's body read deadline passing is 503 timeout.
func TestHTTPBodyReadErrors(t *testing.T) {
	f := newFake()
	h, _ := testHandler(t, f, HTTPOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest(http.MethodPut, "/v1/kv/a", &erroringBody{}).WithContext(ctx)
	req.ContentLength = 100
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	wantError(t, rec, http.StatusBadRequest, api.CodeBadRequest)

	var netErr net.Error = timeoutError{}
	e := h.bodyReadError(&net.OpError{Op: "read", Net: "tcp", Err: netErr})
	if e.status != http.StatusServiceUnavailable || e.code != api.CodeTimeout || !strings.Contains(e.message, "nothing was done") {
		t.Errorf("deadline: %+v, want 503 timeout saying nothing was done", e)
	}
	if e := h.bodyReadError(errors.New("boom")); e.status != http.StatusBadRequest || e.code != api.CodeBadRequest {
		t.Errorf("other error: %+v, want 400 bad_request", e)
	}
	if e := h.bodyReadError(&http.MaxBytesError{Limit: 5}); e.status != http.StatusRequestEntityTooLarge || e.code != api.CodeTooLarge {
		t.Errorf("too large: %+v, want 413 too_large", e)
	}
}
