package server

import (
	"errors"
	"net/http"
	"testing"

	"github.com/unrdf/consensus/api"
)

// TestControlCharacterKeysRefused checks every JSON route that writes a
// key or takes an id: a control character (Unicode category Cc) is 400
// invalid_key, before the backend is called. Reads and deletes take any
// key (TestReadsTakeAnyKey).
func TestControlCharacterKeysRefused(t *testing.T) {
	tests := []struct {
		method, target, body string
	}{
		{"PUT", "/v1/kv/a%00b", `1`},
		{"PUT", "/v1/kv/a%0Ab", `1`},
		{"PUT", "/v1/kv/%09", `1`},
		{"POST", "/v1/txn", `{"ops":[{"op":"put","key":"ok","value":1},{"op":"put","key":"a\nb","value":1}]}`},
		{"POST", "/v1/txn", `{"ops":[{"op":"delete","key":"\u0000"}]}`},
		{"POST", "/v1/workflows", `{"id":"w\u0001"}`},
		{"PATCH", "/v1/workflows/w%09", `{}`},
		{"POST", "/v1/workflows/w%09/stop", `{}`},
		{"GET", "/v1/workflows/w%09", ""},
		{"POST", "/v1/nodes", `{"id":"n\u007f"}`},
		{"DELETE", "/v1/nodes/n%00", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			f := newFake()
			h, _ := testHandler(t, f, HTTPOptions{})
			rec := serve(h, tt.method, tt.target, tt.body)
			if tt.method == http.MethodHead {
				if rec.Code != http.StatusBadRequest {
					t.Fatalf("status = %d, want 400", rec.Code)
				}
			} else {
				wantError(t, rec, http.StatusBadRequest, api.CodeInvalidKey)
			}
			if f.calls != 0 {
				t.Errorf("the backend was called %d time(s) for a refused key", f.calls)
			}
			if n := f.Store.Machine().Stats().AppliedIndex; n != 0 {
				t.Errorf("%d command(s) applied for a refused key", n)
			}
		})
	}
	// The same keys without the control character are accepted.
	f := newFake()
	h, _ := testHandler(t, f, HTTPOptions{})
	for _, target := range []string{"/v1/kv/ab", "/v1/kv/a%E2%80%A8b", "/v1/kv/a%C2%A0b"} {
		if rec := serve(h, http.MethodPut, target, `1`); rec.Code != http.StatusOK {
			t.Errorf("PUT %s = %d %s", target, rec.Code, rec.Body)
		}
	}
}

// TestReadsTakeAnyKey checks that a get, a delete and a list take any key
// the state may hold (etcd's API writes binary keys): the backend answers.
func TestReadsTakeAnyKey(t *testing.T) {
	tests := []struct {
		method, target string
		status         int
	}{
		{"GET", "/v1/kv/%0D", http.StatusNotFound},
		{"GET", "/v1/kv/a%1B%5B31m", http.StatusNotFound},
		{"GET", "/v1/kv/%00%FF", http.StatusNotFound},
		{"HEAD", "/v1/kv/a%00", http.StatusNotFound},
		{"DELETE", "/v1/kv/%7F", http.StatusNotFound},
		{"DELETE", "/v1/kv/a%C2%85", http.StatusNotFound},
		{"GET", "/v1/kv?prefix=a%00", http.StatusOK},
		{"GET", "/v1/kv?prefix=%C2%9F", http.StatusOK},
		{"GET", "/v1/kv?prefix=%FF&limit=1&next=%FF%00", http.StatusOK},
	}
	for _, tt := range tests {
		f := newFake()
		h, _ := testHandler(t, f, HTTPOptions{})
		if rec := serve(h, tt.method, tt.target, ""); rec.Code != tt.status {
			t.Errorf("%s %s = %d %s, want %d", tt.method, tt.target, rec.Code, rec.Body, tt.status)
		}
	}
}

// TestParseTxnRefusesControlCharacterKeys covers the batch parser the
// command line shares with POST /v1/txn.
func TestParseTxnRefusesControlCharacterKeys(t *testing.T) {
	_, err := ParseTxn([]byte(`{"ops":[{"op":"put","key":"a\tb","value":1}]}`))
	var terr *TxnError
	if !errors.As(err, &terr) || terr.Code != api.CodeInvalidKey {
		t.Fatalf("ParseTxn = %v, want a TxnError with code invalid_key", err)
	}
}

// TestWSControlCharacterKeysRefused is the same rule on /v1/ws: every
// operation that writes a key or takes an id; a get, delete or list takes
// any key.
func TestWSControlCharacterKeysRefused(t *testing.T) {
	f := newFake()
	_, url := wsTestServer(t, f, HTTPOptions{})
	w := dialWS(t, url)
	reqs := map[string][]any{
		"put":         {1, api.OpPut, "a\x00b", []byte("1")},
		"txn":         {5, api.OpTxn, []any{[]any{1, "ok", []byte(`1`), 0}, []any{2, "a\rb"}}},
		"wf start":    {6, api.OpWorkflowStart, "w\x01", []byte(`{}`)},
		"wf stop":     {7, api.OpWorkflowStop, "w\x01"},
		"wf update":   {8, api.OpWorkflowUpdate, "w\x01", []byte(`{}`)},
		"wf get":      {9, api.OpWorkflowGet, "w\x01"},
		"node reg":    {10, api.OpNodeRegister, "n\t", []byte(`{}`)},
		"node dereg":  {11, api.OpNodeDeregister, "n\t"},
		"put allowed": {12, api.OpPut, "a\u2028b", []byte("1")},
	}
	for name, req := range reqs {
		r := w.call(req...)
		if name == "put allowed" {
			if !r.ok {
				t.Errorf("%s: %+v", name, r)
			}
			continue
		}
		if r.ok || r.code != api.CodeInvalidKey {
			t.Errorf("%s: %+v, want invalid_key", name, r)
		}
	}
	if n := f.Store.Machine().Stats().AppliedIndex; n != 0 {
		t.Errorf("%d command(s) applied for refused keys", n)
	}
	if _, ok := f.items["a\u2028b"]; !ok {
		t.Errorf("the allowed key was not stored")
	}
	// Reads and deletes take any key the state may hold.
	for name, req := range map[string][]any{
		"get":    {20, api.OpGet, "a\nb"},
		"delete": {21, api.OpDelete, "\x7f\xff"},
	} {
		if r := w.call(req...); r.ok || r.code != api.CodeKeyNotFound {
			t.Errorf("%s: %+v, want key_not_found", name, r)
		}
	}
	if r := w.call(22, api.OpList, "a\u0085\xff"); !r.ok {
		t.Errorf("list of a binary prefix: %+v", r)
	}
}
