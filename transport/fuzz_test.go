package transport

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// FuzzDecodeFrame feeds DecodeFrame arbitrary bytes. It must never panic,
// and whatever it accepts must survive a re-encode unchanged. The corpus in
// testdata/fuzz/FuzzDecodeFrame holds valid frames and garbage; run
// `go test -fuzz FuzzDecodeFrame ./transport/` to search further.
func FuzzDecodeFrame(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x80})
	for _, msgs := range [][]*raftpb.Message{
		nil,
		{typicalMsgApp()},
		{{Type: raftpb.MsgHeartbeat.Enum(), To: proto.Uint64(2), From: proto.Uint64(1), Term: proto.Uint64(3), Commit: proto.Uint64(9), Context: []byte("rd")}},
	} {
		b, err := EncodeFrame(1, msgs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		from, msgs, err := DecodeFrame(b)
		if err != nil {
			return
		}
		again, err := EncodeFrame(from, msgs)
		if err != nil {
			t.Fatalf("re-encode of a decoded frame failed: %v", err)
		}
		from2, msgs2, err := DecodeFrame(again)
		if err != nil {
			t.Fatalf("decode of a re-encoded frame failed: %v", err)
		}
		if from2 != from || len(msgs2) != len(msgs) {
			t.Fatalf("re-decoded from %d with %d msgs, want %d with %d", from2, len(msgs2), from, len(msgs))
		}
		for i := range msgs {
			if !proto.Equal(msgs[i], msgs2[i]) {
				t.Fatalf("msg %d changed in a round trip:\n%v\n%v", i, msgs[i], msgs2[i])
			}
		}
	})
}
