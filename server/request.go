package server

// Reading a request: keys, prefixes, bodies and query parameters, each
// refused with the API's error when it is not acceptable.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// checkKey returns why key is not acceptable, or "" if it is.
func (h *apiHandler) checkKey(key string) string { return keyProblem(key, h.opts.MaxKeyBytes) }

// checkStoredKey returns why key cannot be a key of the state (empty or
// too long: kv.ValidateStoredKey), or "" if it can. Reads and deletes
// take any such key.
func (h *apiHandler) checkStoredKey(key string) string {
	if err := kv.ValidateStoredKey(key, h.opts.MaxKeyBytes); err != nil {
		return keyText(err)
	}
	return ""
}

// keyProblem returns why key is not acceptable with keys of at most max
// bytes, or "" if it is. The rules are kv.ValidateKey's, the ones every
// API that takes a key shares: non-empty UTF-8 without control
// characters.
func keyProblem(key string, max int) string {
	if err := kv.ValidateKey(key, max); err != nil {
		return keyText(err)
	}
	return ""
}

// keyText is a key check's error as a message for the caller: what is
// wrong, without the package prefix and the sentinel the code already says.
func keyText(err error) string {
	msg := strings.TrimPrefix(err.Error(), "kv: ")
	return strings.TrimSuffix(msg, ": "+kv.ErrInvalidKey.Error())
}

// prefixParam reads ?prefix= (absent: every key); it answers 400 itself
// when the prefix is repeated or not acceptable.
func (h *apiHandler) prefixParam(w http.ResponseWriter, query url.Values) (string, bool) {
	prefix, ok := singleParam(w, query, "prefix")
	if !ok {
		return "", false
	}
	if msg := h.checkPrefix(prefix); msg != "" {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeInvalidKey, message: msg})
		return "", false
	}
	return prefix, true
}

// checkPrefix returns why a list or watch prefix is not acceptable, or ""
// if it is (kv.ValidatePrefix: any bytes within the key limit, since a
// key may hold any). The empty prefix lists everything.
func (h *apiHandler) checkPrefix(prefix string) string {
	if err := kv.ValidatePrefix(prefix, h.opts.MaxKeyBytes); err != nil {
		return keyText(err)
	}
	return ""
}

// readValue reads the request body, at most MaxBodyBytes, and returns it as
// compact JSON. It answers the request itself and returns false when the
// body is too large, unreadable or not one valid UTF-8 JSON value.
func (h *apiHandler) readValue(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := h.opts.MaxBodyBytes
	if r.ContentLength > limit {
		// Answer before reading: the client said how much it will send.
		w.Header().Set("Connection", "close")
		writeError(w, apiError{status: http.StatusRequestEntityTooLarge, code: api.CodeTooLarge,
			message: fmt.Sprintf("request body is %d bytes, larger than the limit of %d", r.ContentLength, limit)})
		return nil, false
	}
	// A client that sends its body slowly gets BodyReadTimeout, then the
	// read fails and the connection closes. (Unsupported on recorders in
	// tests; the error is then irrelevant.)
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.opts.BodyReadTimeout))
	var body []byte
	if r.Body != nil {
		var buf bytes.Buffer
		if r.ContentLength > 0 {
			buf.Grow(int(r.ContentLength))
		}
		_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			writeError(w, h.bodyReadError(err))
			return nil, false
		}
		body = buf.Bytes()
	}
	compact, e := compactJSONValue(body, "request body")
	if e != nil {
		writeError(w, *e)
		return nil, false
	}
	return compact, true
}

// bodyReadError is the answer to a request whose body could not be read.
// The request's context says nothing here: net/http cancels it on any
// read error of the connection, a client's truncated body included. So
// the error itself decides: a body over the limit is 413, the server's own
// BodyReadTimeout passing is 503 timeout (the server gave up; nothing was
// done), and anything else (a body shorter than its Content-Length, bad
// chunked framing, a reset) is the client's: 400 bad_request.
func (h *apiHandler) bodyReadError(err error) apiError {
	var tooLarge *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooLarge):
		return apiError{status: http.StatusRequestEntityTooLarge, code: api.CodeTooLarge,
			message: fmt.Sprintf("request body is larger than the limit of %d bytes", tooLarge.Limit)}
	case errors.As(err, &netErr) && netErr.Timeout():
		return apiError{status: http.StatusServiceUnavailable, code: api.CodeTimeout,
			message: fmt.Sprintf("the request body did not arrive within %v; nothing was done", h.opts.BodyReadTimeout)}
	}
	return apiError{status: http.StatusBadRequest, code: api.CodeBadRequest,
		message: "reading request body: " + err.Error()}
}

// compactJSONValue returns body, named what in messages, as compact JSON,
// or the invalid_json error that says why it is not one valid UTF-8 JSON
// value.
func compactJSONValue(body []byte, what string) ([]byte, *apiError) {
	// RFC 8259 requires UTF-8 between systems; encoding/json does not check
	// it inside strings, so check here rather than store what we could not
	// return as valid JSON.
	if !utf8.Valid(body) {
		return nil, &apiError{status: http.StatusBadRequest, code: api.CodeInvalidJSON,
			message: what + " is not valid UTF-8"}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, &apiError{status: http.StatusBadRequest, code: api.CodeInvalidJSON,
			message: what + " is empty; it must be one JSON value"}
	}
	// json.Compact validates with the same scanner as json.Valid (nesting
	// depth bounded, so hostile input cannot exhaust the stack) and says
	// where the syntax error is.
	var compact bytes.Buffer
	compact.Grow(len(body))
	if err := json.Compact(&compact, body); err != nil {
		return nil, &apiError{status: http.StatusBadRequest, code: api.CodeInvalidJSON,
			message: what + " is not one valid JSON value: " + err.Error()}
	}
	return compact.Bytes(), nil
}

// parseQuery parses the raw query strictly: a bad escape (or a semicolon)
// is answered 400, where url.URL.Query would silently drop the pair.
func parseQuery(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeBadRequest,
			message: "invalid query string: " + err.Error()})
		return nil, false
	}
	return q, true
}

// singleParam returns the query parameter name, "" when absent; it answers
// 400 and returns false when the parameter is repeated.
func singleParam(w http.ResponseWriter, q url.Values, name string) (string, bool) {
	vs := q[name]
	switch len(vs) {
	case 0:
		return "", true
	case 1:
		return vs[0], true
	}
	writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeBadRequest,
		message: "query parameter " + strconv.Quote(name) + " is given more than once"})
	return "", false
}

// parseConsistency reads ?consistency=: absent or "linearizable" is a
// linearizable read, "local" a local one; anything else is answered 400.
func parseConsistency(w http.ResponseWriter, q url.Values) (kv.Consistency, bool) {
	v, ok := singleParam(w, q, "consistency")
	if !ok {
		return 0, false
	}
	if _, given := q["consistency"]; !given {
		return kv.Linearizable, true
	}
	switch v {
	case "linearizable":
		return kv.Linearizable, true
	case "local":
		return kv.Local, true
	}
	writeError(w, apiError{status: http.StatusBadRequest, code: api.CodeBadRequest,
		message: `consistency must be "linearizable" or "local", not ` + strconv.Quote(v)})
	return 0, false
}
