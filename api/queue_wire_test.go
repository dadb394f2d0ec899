package api

import (
	"encoding/hex"
	"reflect"
	"testing"
)

// Queue operations on the wire: their bytes (a task's id is a str after
// the queue's name) and the decoder reading back what AppendArgs wrote.
func TestQueueRequests(t *testing.T) {
	rid := RequestID{Client: "go-abc", Seq: 300}
	complete := Request{Op: OpTaskComplete, Key: "q", Task: "t", Value: []byte(`{}`)}
	args, nargs := AppendArgs(nil, &complete)
	if got, want := hex.EncodeToString(AppendRequest(nil, 70000, complete.Op, nargs, args)), "96ce000111702ba171a174c4027b7dc0"; got != want {
		t.Errorf("complete: %s\nwant %s", got, want)
	}
	for _, req := range []Request{
		{Op: OpQueueEnqueue, Key: "q", Value: []byte(`{"data":1}`), ReqID: rid, Fence: Fence{Lock: "l", Token: 7}},
		{Op: OpQueueClaim, Key: "q", Value: []byte(`{"worker":"w","ttlMs":1000}`)},
		{Op: OpTaskHeartbeat, Key: "q", Task: "t", Value: []byte(`{"epoch":9}`)},
		{Op: OpTaskComplete, Key: "q", Task: "t", Value: []byte(`{"epoch":9}`), ReqID: rid},
		{Op: OpTaskFail, Key: "q", Task: "t", Value: []byte(`{"epoch":9,"error":"e"}`)},
		{Op: OpTaskRequeue, Key: "q", Task: "t"},
		{Op: OpTaskGet, Key: "q", Task: "t", Consistency: Local},
		{Op: OpQueueStats, Key: "q"},
		{Op: OpTaskList, Key: "q", Value: []byte(`{"state":"dead"}`)},
	} {
		req.ID = 5
		args, nargs := AppendArgs(nil, &req)
		frame := AppendRequest(AppendFrameHeader(nil, 1), req.ID, req.Op, nargs, args)
		got, err := DecodeRequests(frame, 1)
		if err != nil || len(got) != 1 {
			t.Fatalf("%v: %v", req.Op, err)
		}
		if !reflect.DeepEqual(got[0], req) {
			t.Errorf("%v: decoded %+v, want %+v", req.Op, got[0], req)
		}
	}
	// A request for a number between the groups is unknown.
	frame := AppendRequest(AppendFrameHeader(nil, 1), 1, Op(31), 0, nil)
	if got, err := DecodeRequests(frame, 1); err != nil || got[0].Bad == "" {
		t.Fatalf("op 31: %+v, %v; want a bad request", got, err)
	}
}
