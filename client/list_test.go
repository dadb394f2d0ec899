package client

import (
	"errors"
	"fmt"
	"iter"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/server"
)

// collectList gathers an iterator's values, stopping at its first error.
func collectList[T any](seq iter.Seq2[T, error]) ([]T, error) {
	var out []T
	for v, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}

// smallFrameServer serves a store whose /v1/ws frames are at most frame
// bytes, so that a few thousand keys outgrow one.
func smallFrameServer(t *testing.T, frame int64, opts ...kv.Option) (*kv.Machine, *Client) {
	t.Helper()
	m := kv.NewMachine(opts...)
	srv := httptest.NewServer(server.NewHandler(kv.NewStore(&timeoutRaft{machine: m}, m),
		server.HTTPOptions{WSMaxFrameBytes: frame, MaxBodyBytes: 1 << 10}))
	t.Cleanup(srv.Close)
	c := newClient(t, Config{Endpoints: []string{srv.URL}, MaxFrameBytes: frame})
	return m, c
}

// TestListLargerThanAFrame lists a prefix whose answer is several frames
// long: the old one-frame list is too_large, List pages through all of
// it at one revision while writes land between pages, and Keys, Values
// and Count agree.
func TestListLargerThanAFrame(t *testing.T) {
	const frame = 64 << 10
	_, c := smallFrameServer(t, frame)
	ctx := testContext(t)
	const n = 3000
	value := []byte(`"` + strings.Repeat("v", 90) + `"`)
	for b := 0; b < n; b += 500 {
		var ops []kv.Op
		for i := b; i < b+500; i++ {
			ops = append(ops, kv.Op{Type: kv.OpPut, Key: fmt.Sprintf("big/%05d", i), Value: value})
		}
		if _, err := c.Batch(ctx, ops); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Put(ctx, "other", []byte("1")); err != nil {
		t.Fatal(err)
	}

	// The one-frame list cannot answer.
	if _, err := c.doRequest(ctx, &api.Request{Op: api.OpList, Key: "big/"}); !errors.Is(err, kv.ErrValueTooLarge) || !strings.Contains(err.Error(), "list page") {
		t.Fatalf("one-frame list of %d keys: %v", n, err)
	}

	pages, revs := 0, map[int64]bool{}
	for p, err := range c.Pages(ctx, "big/") {
		if err != nil {
			t.Fatal(err)
		}
		pages++
		revs[p.Revision] = true
		// Writes between pages, in the part not read yet and before it.
		if _, err := c.Put(ctx, fmt.Sprintf("big/%05d", n-1-pages), []byte(`"changed"`)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Delete(ctx, fmt.Sprintf("big/%05d", n-100-pages)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Put(ctx, fmt.Sprintf("big/%05da", pages*10), []byte(`"new"`)); err != nil {
			t.Fatal(err)
		}
	}
	if pages < 2 || len(revs) != 1 {
		t.Fatalf("%d pages at revisions %v: want several at one", pages, revs)
	}

	// A fresh List sees the state after those writes, each key once.
	items, err := collectList(c.List(ctx, "big/", WithLimit(700)))
	if err != nil {
		t.Fatal(err)
	}
	count, _, err := c.Count(ctx, "big/")
	if err != nil || int(count) != len(items) || len(items) != n {
		t.Fatalf("listed %d items, counted %d (%v), want %d", len(items), count, err, n)
	}
	for i := 1; i < len(items); i++ {
		if items[i-1].Key >= items[i].Key {
			t.Fatalf("items %d and %d out of order: %q %q", i-1, i, items[i-1].Key, items[i].Key)
		}
	}
	keys, err := collectList(c.Keys(ctx, "big/"))
	if err != nil || len(keys) != n || keys[0] != items[0].Key {
		t.Fatalf("keys: %d, %v", len(keys), err)
	}
	values, err := collectList(c.Values(ctx, "big/"))
	if err != nil || len(values) != n || string(values[0]) != string(items[0].Value) {
		t.Fatalf("values: %d, %v", len(values), err)
	}
	// Stopping early stops the paging.
	seen := 0
	for _, err := range c.Entries(ctx, "big/", WithLimit(10)) {
		if err != nil {
			t.Fatal(err)
		}
		if seen++; seen == 15 {
			break
		}
	}
}

// TestListCompactedBetweenPages: when the server keeps no view of the
// list's revision and the rest of the list changed, the iteration ends
// with ErrCompacted.
func TestListCompactedBetweenPages(t *testing.T) {
	_, c := smallFrameServer(t, 1<<20, kv.WithListViews(0, time.Minute))
	ctx := testContext(t)
	for i := range 20 {
		if _, err := c.Put(ctx, fmt.Sprintf("p/%02d", i), []byte("1")); err != nil {
			t.Fatal(err)
		}
	}
	read := 0
	var last error
	for _, err := range c.List(ctx, "p/", WithLimit(5)) {
		if err != nil {
			last = err
			break
		}
		if read++; read == 5 {
			if _, err := c.Put(ctx, "p/19", []byte("2")); err != nil {
				t.Fatal(err)
			}
		}
	}
	var ce *kv.CompactedError
	if read != 5 || !errors.Is(last, kv.ErrCompacted) || errors.As(last, &ce) {
		// The client carries the server's code, not its fields.
		t.Fatalf("after %d items: %v", read, last)
	}
}
