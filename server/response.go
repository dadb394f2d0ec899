package server

// Writing an answer: JSON bodies, errors, and the status-recording
// writer.

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/unrdf/consensus/api"
)

// fail answers a backend error, logging it at Error when it is not one the
// API expects.
func (h *apiHandler) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := requestError(r.Context(), err)
	if e.unexpected {
		h.log.Error("http backend error", "method", r.Method, "path", r.URL.EscapedPath(), "err", err)
	}
	writeError(w, e)
}

// writeJSON answers status with v as JSON. Values are written as stored:
// no HTML escaping, since the body is application/json and never HTML.
func (h *apiHandler) writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only a backend handing back an invalid stored value gets here.
		h.log.Error("http encoding response", "err", err)
		writeError(w, apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable,
			message: "encoding response: " + err.Error()})
		return
	}
	writeBody(w, status, buf.Bytes())
}

// writeError answers e as {"error":{"code","message"}}; every 503 carries
// Retry-After.
func writeError(w http.ResponseWriter, e apiError) {
	if e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	// Encoding two strings cannot fail; invalid UTF-8 in a message (a key
	// quoted in a backend error) becomes U+FFFD. No HTML escaping: the
	// body is JSON for programs and people, never embedded in a page.
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(errorBody{Error: errorDetail{Code: e.code, Message: e.message}})
	writeBody(w, e.status, body.Bytes())
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body) // a failed write means the client is gone
}

// statusWriter records the status written, so that the panic handler knows
// whether a response has started.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
