package server

import (
	"testing"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// benchFrame is a request frame of 64 puts and 64 gets, the shape a
// busy client sends.
func benchFrame(b *testing.B) []byte {
	var reqs [][]any
	for i := range 64 {
		reqs = append(reqs, []any{2 * i, 1, "bench/key", []byte(`{"name":"Data Processing","status":"running","progress":42}`), []any{"go-client", i + 1}, nil})
		reqs = append(reqs, []any{2*i + 1, 2, "bench/key", 0})
	}
	return wsFrame(b, reqs...)
}

// BenchmarkWSDecodeFrame measures decoding one request frame on the
// server (per frame of 128 requests).
func BenchmarkWSDecodeFrame(b *testing.B) {
	frame := benchFrame(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := decodeWSFrame(frame, 1024); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWSEncodeResponse measures encoding a get's answer on the
// server.
func BenchmarkWSEncodeResponse(b *testing.B) {
	it := kv.Item{Key: "bench/key", Value: []byte(`{"name":"Data Processing","status":"running","progress":42}`),
		Revision: 123456, CreateRevision: 1000, Version: 17}
	b.ReportAllocs()
	for b.Loop() {
		encodeWSResponse(7, api.OpGet, api.Response{Item: it}, nil, DefaultWSMaxFrameBytes)
	}
}
