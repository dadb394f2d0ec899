package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/backup"
	"github.com/unrdf/consensus/internal/testwait"
	"github.com/unrdf/consensus/kv"
)

// GET /v1/snapshot on a running node: a read (read-only tokens may take
// it, no token may not), a verified backup of exactly the state, the
// API's error shape for refusals.
func TestSnapshotRoute(t *testing.T) {
	s := startSingle(t, HTTPOptions{Tokens: testTokens(t)}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	testwait.For(t, 10*time.Second, "the node is ready", func() bool { return s.Node().Ready() == nil })
	for i := range 50 {
		if _, err := s.Store().Put(ctx, fmt.Sprintf("k/%02d", i), []byte(fmt.Sprintf("%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Store().Delete(ctx, "k/07"); err != nil {
		t.Fatal(err)
	}
	url := "http://" + s.HTTPAddr() + snapshotPath
	get := func(method, token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if r := get("GET", ""); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a token: %d", r.StatusCode)
	}
	if r := get("POST", "s3cret-rw"); r.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", r.StatusCode)
	}
	if r := get("HEAD", "r3ad-only"); r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("HEAD: %d %v", r.StatusCode, r.Header)
	}

	r := get("GET", "r3ad-only")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("read-only token: %d", r.StatusCode)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	br, err := backup.Open(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	m := kv.NewMachine()
	if err := m.Restore(consensus.Position{}, br); err != nil {
		t.Fatal(err)
	}
	meta := br.Metadata()
	if meta.Revision != 51 || meta.Keys != 49 || meta.Node != "n1" || meta.ClusterID != s.Node().ClusterID() ||
		meta.StateFormat != backup.StateFormat || time.Since(meta.Created) > time.Minute || r.Header.Get("X-Consensus-Revision") != "51" {
		t.Fatalf("metadata %+v, headers %v", meta, r.Header)
	}
	// The restored state is the node's, byte for byte.
	var a, b bytes.Buffer
	va, vb := m.View(), s.Store().Machine().View()
	defer va.Release()
	defer vb.Release()
	if _, err := va.WriteTo(&a); err != nil {
		t.Fatal(err)
	}
	if _, err := vb.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("the backup's state differs from the node's")
	}

	// At most maxConcurrentBackups at once: beyond, 503 overloaded.
	for range maxConcurrentBackups {
		if !s.api.backups.acquire() {
			t.Fatal("slot refused")
		}
	}
	r = get("GET", "r3ad-only")
	var code string
	if r.StatusCode == http.StatusServiceUnavailable {
		code = decodeCode(t, r.Body)
	}
	if r.StatusCode != http.StatusServiceUnavailable || code != api.CodeOverloaded || r.Header.Get("Retry-After") == "" {
		t.Fatalf("over the limit: %d %s", r.StatusCode, code)
	}
	for range maxConcurrentBackups {
		s.api.backups.release()
	}
	if r := get("GET", "s3cret-rw"); r.StatusCode != http.StatusOK {
		t.Fatalf("after the slots freed: %d", r.StatusCode)
	}
}

// A backend that cannot take views answers 404 in the API's shape; one
// whose linearizable read fails answers that failure's status.
func TestSnapshotRouteErrors(t *testing.T) {
	h, _ := testHandler(t, newFake(), HTTPOptions{})
	plain := NewHandler(struct{ Backend }{newFake()}, HTTPOptions{})
	w := serve(plain, "GET", snapshotPath, "")
	if w.Code != http.StatusNotFound || errorCode(t, w) != api.CodeNotFound {
		t.Fatalf("without SnapshotBackend: %d %s", w.Code, w.Body.String())
	}
	if w := serve(h, "GET", snapshotPath+"?x=%zz", ""); w.Code != http.StatusBadRequest {
		t.Fatalf("bad query: %d %s", w.Code, w.Body.String())
	}
	failing := NewHandler(failingViews{newFake()}, HTTPOptions{})
	w = serve(failing, "GET", snapshotPath, "")
	if w.Code != http.StatusServiceUnavailable || errorCode(t, w) != api.CodeNoLeader {
		t.Fatalf("no leader: %d %s", w.Code, w.Body.String())
	}
	// A backup of the fake's (empty) state verifies.
	w = serve(h, "GET", snapshotPath, "")
	if w.Code != http.StatusOK {
		t.Fatalf("fake: %d %s", w.Code, w.Body.String())
	}
	if _, _, err := backup.Verify(w.Body); err != nil {
		t.Fatal(err)
	}
}

type failingViews struct{ *fakeBackend }

func (failingViews) View(context.Context) (*kv.View, error) {
	return nil, fmt.Errorf("read index: %w", consensus.ErrNoLeader)
}

func decodeCode(t *testing.T, r io.Reader) string {
	t.Helper()
	var body errorBody
	b, _ := io.ReadAll(r)
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("error body %q: %v", b, err)
	}
	return body.Error.Code
}
