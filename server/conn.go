package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unrdf/consensus/api"
)

// net/http answers some requests itself, before any handler runs, with a
// plain-text body: a request line or target it cannot parse (a bad
// %-escape such as /v1/kv/bad%ZZ), a malformed or missing Host, an
// invalid header, headers over the limit (431), an unsupported transfer
// encoding (501) or protocol version (505), an Expect other than
// 100-continue (417), and plain HTTP sent to the TLS port. The API
// promises JSON errors and no 5xx but 503, so the connections of the API
// are wrapped (apiConn): a response written while no handler of ours has
// the connection can only be one of those, and it is rewritten as the
// JSON envelope with a fitting status before it reaches the client.
//
// Over TLS the wrapper sits below the encryption, so it sees only the
// plain-text answer to plain HTTP on the TLS port; net/http's other
// refusals stay plain text there (their bytes are encrypted by then).
// HTTP/2 refuses a malformed request with a stream reset, not a response.

// listenAPI wraps ln so that net/http's own refusals on its connections
// are JSON errors; serve it with the server newHTTPServer returns.
func listenAPI(ln net.Listener) net.Listener { return apiListener{ln} }

type apiListener struct{ net.Listener }

func (l apiListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &apiConn{Conn: c}, nil
}

// apiConnKey is the context key under which a request's *apiConn is found.
type apiConnKey struct{}

// newHTTPServer returns the http.Server of the API: HTTP/1.1 and h2c, or
// HTTP/1.1 and HTTP/2 when tlsOn (the caller wraps the listener in TLS),
// with the timeouts of opts, and the hooks that let listenAPI's
// connections tell net/http's own answers from the handler's.
func newHTTPServer(api *apiHandler, tlsOn bool, logger *slog.Logger) *http.Server {
	// HTTP/1.1 and HTTP/2 over cleartext TCP with prior knowledge (h2c):
	// many requests share one connection without TLS. /v1/ws needs
	// HTTP/1.1, which a WebSocket client always speaks.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	if tlsOn {
		protocols.SetHTTP2(true)
	}
	fresh := &freshConns{conns: make(map[*apiConn]struct{})}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c, _ := r.Context().Value(apiConnKey{}).(*apiConn); c != nil && !c.enterHandler() {
				return // closed by Shutdown before the request reached us
			}
			api.ServeHTTP(w, r)
		}),
		Protocols:         &protocols,
		ReadHeaderTimeout: api.opts.ReadHeaderTimeout,
		IdleTimeout:       api.opts.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ac := apiConnOf(c); ac != nil {
				return context.WithValue(ctx, apiConnKey{}, ac)
			}
			return ctx
		},
		ConnState: func(c net.Conn, state http.ConnState) {
			ac := apiConnOf(c)
			if ac == nil {
				return
			}
			fresh.track(ac, state)
			// Idle: the last response is flushed and the server waits
			// for the next request, which is not ours until it reaches
			// the handler.
			if state == http.StateIdle {
				ac.leaveHandler()
			}
		},
	}
	srv.RegisterOnShutdown(fresh.closeAll)
	return srv
}

// freshConns holds the connections that have not yet delivered a request
// (http.StateNew). http.Server.Shutdown waits for them for up to five
// seconds, as if a request were in progress: a browser's speculative
// connection, or a TCP health check that connects and says nothing,
// would hold a node's shutdown for that long. No request of theirs has
// reached a handler, so nothing is lost by closing them at once.
type freshConns struct {
	mu       sync.Mutex
	conns    map[*apiConn]struct{}
	shutdown bool
}

func (f *freshConns) track(c *apiConn, state http.ConnState) {
	// Every request moves its connection through Active and Idle: only
	// the first move out of New takes the lock.
	if state != http.StateNew && !c.fresh.CompareAndSwap(true, false) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case state != http.StateNew:
		delete(f.conns, c)
	case f.shutdown:
		c.closeUnlessHandled()
	default:
		f.conns[c] = struct{}{}
		c.fresh.Store(true)
	}
}

// closeAll is registered with http.Server.RegisterOnShutdown.
func (f *freshConns) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shutdown = true
	for c := range f.conns {
		c.closeUnlessHandled()
		delete(f.conns, c)
	}
}

// apiConnOf returns the *apiConn under c (also under TLS), or nil.
func apiConnOf(c net.Conn) *apiConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	ac, _ := c.(*apiConn)
	return ac
}

// maxCapturedLine bounds the bytes of a request line an apiConn keeps to
// say what was wrong with it: a key of 1 KiB, every byte %-escaped, with
// room to spare.
const maxCapturedLine = 8 << 10

// apiConn is a connection of the API (see the comment at the top of this
// file). Between requests it keeps the start of what it reads, so that a
// refusal can say which part of the request line was wrong.
type apiConn struct {
	net.Conn

	mu sync.Mutex
	// handled is true from the moment a request of this connection
	// reaches the handler until the server next waits for a request: its
	// writes are the handler's (or a hijacked stream's) and pass as they
	// are.
	handled bool
	// line holds the bytes read since the server last waited for a
	// request, up to the first newline or maxCapturedLine.
	line []byte
	// lineDone is set once line holds a newline or is full.
	lineDone bool
	// http2 is set once the connection has started HTTP/2 (h2c with prior
	// knowledge): frames are never net/http's plain-text refusals, so
	// nothing is rewritten.
	http2 bool
	// shut is set when Shutdown closed the connection before any request
	// reached the handler; one that arrives after is not served.
	shut bool
	// fresh is set while freshConns holds the connection (StateNew).
	fresh atomic.Bool
}

// http2Preface starts the client preface of HTTP/2 with prior knowledge.
var http2Preface = []byte("PRI * HTTP/2.0")

// enterHandler marks the connection as the handler's, and reports false
// if Shutdown closed it first: then the request is not served.
func (c *apiConn) enterHandler() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shut {
		return false
	}
	c.handled, c.line, c.lineDone = true, c.line[:0], true
	return true
}

// closeUnlessHandled closes a connection no request of which has reached
// the handler (nor started HTTP/2); either this or enterHandler wins.
func (c *apiConn) closeUnlessHandled() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handled || c.http2 {
		return
	}
	c.shut = true
	c.Conn.Close()
}

func (c *apiConn) leaveHandler() {
	c.mu.Lock()
	if c.http2 {
		c.mu.Unlock()
		return
	}
	// Bytes of the next request may already sit in net/http's buffer;
	// then line never sees its start and a refusal is the generic one.
	c.handled, c.line, c.lineDone = false, c.line[:0], false
	c.mu.Unlock()
}

func (c *apiConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if !c.handled && !c.lineDone {
			got := p[:n]
			if i := bytes.IndexByte(got, '\n'); i >= 0 {
				got, c.lineDone = got[:i+1], true
			}
			if room := maxCapturedLine - len(c.line); len(got) >= room {
				got, c.lineDone = got[:room], true
			}
			c.line = append(c.line, got...)
			if c.lineDone && bytes.HasPrefix(c.line, http2Preface) {
				c.http2, c.handled, c.line = true, true, nil
			}
		}
		c.mu.Unlock()
	}
	return n, err
}

// http1Status starts every HTTP/1 status line.
var http1Status = []byte("HTTP/1.")

func (c *apiConn) Write(p []byte) (int, error) {
	if !bytes.HasPrefix(p, http1Status) {
		return c.Conn.Write(p)
	}
	c.mu.Lock()
	handled := c.handled || c.http2
	var line []byte
	if !handled {
		line = bytes.Clone(c.line)
	}
	c.mu.Unlock()
	if handled {
		return c.Conn.Write(p)
	}
	answer, ok := jsonRefusal(p, line)
	if !ok {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(answer); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite half-closes the connection, as net/http does after some
// refusals so that the client reads the answer before the reset.
func (c *apiConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps the kernel's copy (sendfile, splice) for response bodies
// net/http streams from a reader; only a handler's responses take it.
func (c *apiConn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.Conn, r) }

// jsonRefusal parses raw, a whole response net/http wrote on its own, and
// returns it as the API's JSON error; ok is false when raw is not one
// complete response. line is the start of the refused request, if known.
func jsonRefusal(raw, line []byte) (answer []byte, ok bool) {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		return nil, false
	}
	text, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode < 400 {
		return nil, false
	}
	e := refusalError(resp.StatusCode, string(text), line)
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(errorBody{Error: errorDetail{Code: e.code, Message: e.message}})
	var out bytes.Buffer
	fmt.Fprintf(&out, "HTTP/1.1 %d %s\r\n", e.status, http.StatusText(e.status))
	out.WriteString("Content-Type: application/json\r\n")
	fmt.Fprintf(&out, "Content-Length: %d\r\n", body.Len())
	out.WriteString("X-Content-Type-Options: nosniff\r\n")
	if e.status == http.StatusServiceUnavailable {
		out.WriteString("Retry-After: 1\r\n")
	}
	fmt.Fprintf(&out, "Date: %s\r\n", time.Now().UTC().Format(http.TimeFormat))
	out.WriteString("Connection: close\r\n\r\n")
	out.Write(body.Bytes())
	return out.Bytes(), true
}

// refusalError is the API's error for a request net/http refused with
// status and plain-text body text.
func refusalError(status int, text string, line []byte) apiError {
	// net/http's bodies are "400 Bad Request", "400 Bad Request: <why>",
	// "Unsupported transfer encoding", or a sentence.
	detail := strings.TrimSpace(text)
	if prefix := strconv.Itoa(status) + " " + http.StatusText(status); strings.HasPrefix(detail, prefix) {
		detail = strings.TrimPrefix(strings.TrimPrefix(detail, prefix), ":")
		detail = strings.TrimSpace(detail)
	}
	switch {
	case status == http.StatusBadRequest && strings.Contains(detail, "HTTP request to an HTTPS server"):
		return apiError{status: status, code: api.CodeBadRequest, message: api.HTTPSRequiredMessage}
	case status == http.StatusRequestHeaderFieldsTooLarge:
		return apiError{status: status, code: api.CodeTooLarge,
			message: "request headers are larger than the server's limit"}
	case status == http.StatusExpectationFailed:
		return apiError{status: status, code: api.CodeBadRequest,
			message: "unsupported Expect header: only 100-continue is supported"}
	case status == http.StatusBadRequest && detail == "":
		if e, ok := requestLineError(line); ok {
			return e
		}
		return apiError{status: status, code: api.CodeBadRequest,
			message: "malformed request: the request line (method, target or version) or a header does not parse"}
	}
	if detail == "" {
		detail = http.StatusText(status)
	}
	// 501 (transfer encoding) and 505 (protocol version) are the
	// client's input too; the API answers no 5xx but 503.
	if status >= 500 || status < 400 {
		status = http.StatusBadRequest
	}
	return apiError{status: status, code: api.CodeBadRequest, message: "malformed request: " + detail}
}

// requestLineError says what is wrong with a request line net/http could
// not parse, when it can tell: a target that does not parse as a URL. A
// key that does not percent-decode, or holds a control character, is
// invalid_key, as the handler answers a bad key.
func requestLineError(line []byte) (apiError, bool) {
	s := strings.TrimRight(string(line), "\r\n")
	method, rest, ok := strings.Cut(s, " ")
	if !ok || method == "" {
		return apiError{}, false
	}
	target, _, _ := strings.Cut(rest, " ")
	_, err := url.ParseRequestURI(target)
	if err == nil {
		return apiError{}, false
	}
	path, _, _ := strings.Cut(target, "?")
	if escapedKey, isKey := strings.CutPrefix(path, kvPrefix); isKey {
		if _, kerr := url.PathUnescape(escapedKey); kerr != nil {
			return apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey,
				message: "key does not percent-decode: " + kerr.Error()}, true
		}
		if strings.ContainsFunc(escapedKey, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey,
				message: "key has a control character: " + err.Error()}, true
		}
	}
	return apiError{status: http.StatusBadRequest, code: api.CodeBadRequest,
		message: "request target does not parse: " + err.Error()}, true
}
