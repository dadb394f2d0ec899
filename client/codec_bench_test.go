package client

import (
	"testing"

	"github.com/unrdf/consensus/api"
)

var benchCodecValue = []byte(`{"name":"Data Processing","status":"running","progress":42}`)

// BenchmarkEncodePut measures encoding a put request with a request id,
// as Client.Put and the connection's writer do.
func BenchmarkEncodePut(b *testing.B) {
	var frame []byte
	b.ReportAllocs()
	for b.Loop() {
		r := api.Request{Op: api.OpPut, Key: "bench/key", Value: benchCodecValue,
			ReqID: api.RequestID{Client: "go-client", Seq: 12345}}
		args, nargs := encodeArgs(&r)
		frame = api.AppendFrameHeader(frame[:0], 1)
		frame = api.AppendRequest(frame, 77, api.OpPut, nargs, args)
	}
}

// BenchmarkDecodeGetResponses measures decoding a frame of 64 answers to
// gets, as the connection's reader does.
func BenchmarkDecodeGetResponses(b *testing.B) {
	frame := api.AppendFrameHeader(nil, 64)
	for i := range 64 {
		var err error
		frame, err = api.AppendResponse(frame, api.OpGet, &api.Response{ID: uint64(i), Item: api.Item{
			Key: "bench/key", Value: benchCodecValue, Revision: 123456, CreateRevision: 1000, Version: 17}})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		r, err := api.NewFrameReader(frame)
		if err != nil {
			b.Fatal(err)
		}
		count, _, err := readFrameHeader(r)
		if err != nil {
			b.Fatal(err)
		}
		for range count {
			_, kind, _, err := r.ResponseHeader()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := readPayload(r, api.OpGet, kind); err != nil {
				b.Fatal(err)
			}
		}
		r.Release()
	}
}
