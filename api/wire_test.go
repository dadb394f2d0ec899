package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// The bytes below were written by the client's and the server's own
// codecs before api replaced them: the wire format must not change.

func TestRequestBytes(t *testing.T) {
	rid := RequestID{Client: "go-abc", Seq: 300}
	key, value := "k/é", []byte(`{"a":1}`)
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"put", Request{Op: OpPut, Key: key, Value: value, ReqID: rid}, "96ce0001117001a46b2fc3a9c4077b2261223a317d92a6676f2d616263cd012cc0"},
		{"put if rev", Request{Op: OpPut, Key: key, Value: value, ReqID: rid, Cond: IfRevision(1 << 40)}, "96ce0001117001a46b2fc3a9c4077b2261223a317d92a6676f2d616263cd012ccf0000010000000000"},
		{"put if absent", Request{Op: OpPut, Key: key, Value: value, ReqID: rid, Cond: IfAbsent()}, "96ce0001117001a46b2fc3a9c4077b2261223a317d92a6676f2d616263cd012c00"},
		{"put if exists", Request{Op: OpPut, Key: key, Value: value, ReqID: rid, Cond: IfExists()}, "96ce0001117001a46b2fc3a9c4077b2261223a317d92a6676f2d616263cd012cc3"},
		{"put if negative", Request{Op: OpPut, Key: key, Value: value, ReqID: rid, Cond: IfRevision(-3)}, "96ce0001117001a46b2fc3a9c4077b2261223a317d92a6676f2d616263cd012cd3fffffffffffffffd"},
		{"get local", Request{Op: OpGet, Key: key, Consistency: Local}, "94ce0001117002a46b2fc3a901"},
		{"delete if", Request{Op: OpDelete, Key: key, ReqID: rid, Cond: IfRevision(7)}, "95ce0001117003a46b2fc3a992a6676f2d616263cd012c07"},
		{"list", Request{Op: OpList}, "94ce0001117004a000"},
		{"status", Request{Op: OpStatus}, "92ce0001117005"},
		{"txn", Request{Op: OpTxn, ReqID: rid, Ops: []TxnOp{
			{Type: TxnPut, Key: "a", Value: []byte("1"), Cond: IfAbsent()}, {Type: TxnDelete, Key: "b"}}},
			"94ce0001117006929401a161c40131009302a162c092a6676f2d616263cd012c"},
		{"wf start", Request{Op: OpWorkflowStart, Key: "w1", Value: []byte(`{"x":2}`), ReqID: rid}, "95ce0001117007a27731c4077b2278223a327d92a6676f2d616263cd012c"},
		{"wf stop nil", Request{Op: OpWorkflowStop, Key: "w1", ReqID: rid}, "95ce0001117008a27731c092a6676f2d616263cd012c"},
		{"wf update", Request{Op: OpWorkflowUpdate, Key: "w1", Value: []byte(`{}`), ReqID: rid}, "95ce0001117009a27731c4027b7d92a6676f2d616263cd012c"},
		{"wf get", Request{Op: OpWorkflowGet, Key: "w1"}, "94ce000111700aa2773100"},
		{"wf list", Request{Op: OpWorkflowList, Consistency: Local}, "93ce000111700b01"},
		{"node reg", Request{Op: OpNodeRegister, Key: "n1", Value: []byte(`{"z":"eu"}`), ReqID: rid}, "95ce000111700ca26e31c40a7b227a223a226575227d92a6676f2d616263cd012c"},
		{"node dereg", Request{Op: OpNodeDeregister, Key: "n1", ReqID: rid}, "94ce000111700da26e3192a6676f2d616263cd012c"},
		{"node list", Request{Op: OpNodeList}, "93ce000111700e00"},
		// A put with a lease or a time to live appends them; one without
		// is the same as before they existed (above).
		{"put lease", Request{Op: OpPut, Key: key, Value: value, ReqID: rid, Lease: 0x2a}, "97ce0001117001a46b2fc3a9c4077b2261223a317d92a6676f2d616263cd012cc02a"},
		{"put ttl", Request{Op: OpPut, Key: key, Value: value, ReqID: rid, TTLMs: 30000}, "98ce0001117001a46b2fc3a9c4077b2261223a317d92a6676f2d616263cd012cc0c0cd7530"},
		{"grant", Request{Op: OpLeaseGrant, TTLMs: 5000, Lease: 1<<63 - 1, ReqID: rid}, "95ce000111700fcd1388cf7fffffffffffffff92a6676f2d616263cd012c"},
		{"grant any id", Request{Op: OpLeaseGrant, TTLMs: 5000}, "95ce000111700fcd1388c0c0"},
		{"revoke", Request{Op: OpLeaseRevoke, Lease: 0x2a, ReqID: rid}, "94ce00011170102a92a6676f2d616263cd012c"},
		{"keepalive", Request{Op: OpLeaseKeepAlive, Lease: 0x2a}, "93ce00011170112a"},
		{"lease ttl", Request{Op: OpLeaseTTL, Lease: 0x2a}, "93ce00011170122a"},
		{"lease list", Request{Op: OpLeaseList, Consistency: Local}, "93ce000111701301"},
		// Locks and elections; a fence is the last argument of every
		// write, left out when unset (every write above).
		{"acquire", Request{Op: OpLockAcquire, Key: "l", Lease: 0x2a, WaitMs: 30000, ReqID: rid}, "96ce0001117014a16c2acd753092a6676f2d616263cd012c"},
		{"acquire try", Request{Op: OpLockAcquire, Key: "l", Lease: 0x2a}, "96ce0001117014a16c2ac0c0"},
		{"release", Request{Op: OpLockRelease, Key: "l", Token: 300, ReqID: rid}, "95ce0001117015a16ccd012c92a6676f2d616263cd012c"},
		{"lock get", Request{Op: OpLockGet, Key: "l", Consistency: Local}, "94ce0001117016a16c01"},
		{"campaign", Request{Op: OpCampaign, Key: "e", Lease: 0x2a, Value: []byte(`"a"`), WaitMs: 1000}, "97ce0001117017a1652ac403226122cd03e8c0"},
		{"campaign no value", Request{Op: OpCampaign, Key: "e", Lease: 0x2a}, "97ce0001117017a1652ac0c0c0"},
		{"proclaim", Request{Op: OpProclaim, Key: "e", Token: 9, Value: []byte(`1`)}, "96ce0001117018a16509c40131c0"},
		{"resign", Request{Op: OpResign, Key: "e", Token: 9}, "95ce0001117019a16509c0"},
		{"leader", Request{Op: OpLeader, Key: "e"}, "94ce000111701aa16500"},
		{"fenced put", Request{Op: OpPut, Key: "k", Value: []byte("1"), ReqID: rid, Fence: Fence{Lock: "l", Token: 300}}, "99ce0001117001a16bc4013192a6676f2d616263cd012cc0c0c092a16ccd012c"},
		{"fenced delete", Request{Op: OpDelete, Key: "k", Fence: Fence{Lock: "l", Token: 7}}, "96ce0001117003a16bc0c092a16c07"},
		{"fenced txn", Request{Op: OpTxn, Ops: []TxnOp{{Type: TxnDelete, Key: "b"}}, Fence: Fence{Lock: "l", Token: 7}}, "95ce0001117006919302a162c0c092a16c07"},
		{"node reg lease", Request{Op: OpNodeRegister, Key: "n1", Lease: 0x2a}, "97ce000111700ca26e31c0c0c02a"},
		{"fenced grant", Request{Op: OpLeaseGrant, TTLMs: 5000, Fence: Fence{Lock: "l", Token: 7}}, "96ce000111700fcd1388c0c092a16c07"},
	}
	for _, tt := range tests {
		args, nargs := AppendArgs(nil, &tt.req)
		got := hex.EncodeToString(AppendRequest(nil, 70000, tt.req.Op, nargs, args))
		if got != tt.want {
			t.Errorf("%s: %s\nwant %s", tt.name, got, tt.want)
		}
	}
	// Long strings and bins take their 16- and 32-bit length forms.
	long := Request{Op: OpPut, Key: strings.Repeat("k", 300), Value: bytes.Repeat([]byte("x"), 70000), ReqID: rid}
	args, nargs := AppendArgs(nil, &long)
	b := AppendRequest(nil, 70000, OpPut, nargs, args)
	if sum := sha256.Sum256(b); len(b) != 70327 || hex.EncodeToString(sum[:]) != "1ee6f0c8ee0f14f0c3f692b6eec964bc94cd05bb3d26331212566b9529dff9f9" {
		t.Errorf("long put: %d bytes, sha256 %x", len(b), sum)
	}
}

func TestResponseBytes(t *testing.T) {
	it := Item{Key: "k/é", Value: []byte(`{"a":1}`), Revision: 1 << 33, CreateRevision: 300, Version: 2}
	remaining := int64(1500)
	tests := []struct {
		name string
		op   Op
		resp Response
		want string
	}{
		{"revision", OpPut, Response{ID: 70000, Revision: 5}, "93ce000111700005"},
		{"big revision", OpDelete, Response{ID: 1 << 63, Revision: 1 << 40}, "93cf800000000000000000cf0000010000000000"},
		{"item", OpGet, Response{ID: 1, Item: it}, "93010095a46b2fc3a9c4077b2261223a317dcf0000000200000000cd012c02"},
		{"nil item value", OpWorkflowGet, Response{ID: 1, Item: Item{Key: "x"}}, "93010095a178c0000000"},
		{"empty list", OpList, Response{ID: 2, Revision: 9}, "930200920990"},
		{"list", OpNodeList, Response{ID: 2, Revision: 9, Items: []Item{it, it}}, "93020092099295a46b2fc3a9c4077b2261223a317dcf0000000200000000cd012c0295a46b2fc3a9c4077b2261223a317dcf0000000200000000cd012c02"},
		{"status", OpStatus, Response{ID: 3, Status: []byte(`{"nodeId":"n1"}`)}, "930300c40f7b226e6f64654964223a226e31227d"},
		{"lease", OpLeaseGrant, Response{ID: 1, Lease: Lease{ID: 0x2a, TTLMs: 2000}}, "930100942acd07d0c0c0"},
		{"lease keys", OpLeaseTTL, Response{ID: 1, Lease: Lease{ID: 0x2a, TTLMs: 2000, RemainingMs: &remaining, Keys: []string{"a", "b"}}}, "930100942acd07d0cd05dc92a161a162"},
		{"leases", OpLeaseList, Response{ID: 1, Leases: []Lease{{ID: 1, TTLMs: 10}, {ID: 2, TTLMs: 20}}}, "9301009294010ac0c0940214c0c0"},
		{"lock", OpLockAcquire, Response{ID: 1, Lock: Lock{Name: "l", Token: 300, Lease: 0x2a}}, "93010095a16ccd012c2ac000"},
		{"leader", OpLeader, Response{ID: 1, Lock: Lock{Name: "e", Token: 9, Lease: 0x2a, Value: []byte(`1`), Waiters: 2}}, "93010095a16509" + "2ac4013102"},
		{"none", OpResign, Response{ID: 1}, "930100c0"},
		{"error", OpGet, Response{ID: 4, Code: CodeKeyNotFound, Message: "kv: key \"\xff\": key not found"}, "93040192ad6b65795f6e6f745f666f756e64bc6b763a206b65792022efbfbd223a206b6579206e6f7420666f756e64"},
	}
	for _, tt := range tests {
		b, err := AppendResponse(nil, tt.op, &tt.resp)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := hex.EncodeToString(b); got != tt.want {
			t.Errorf("%s: %s\nwant %s", tt.name, got, tt.want)
		}
	}
	if _, err := AppendResponse(nil, 99, &Response{ID: 1}); err == nil {
		t.Error("a result to operation 99 encoded")
	}
}

// TestAppendMatchesMsgpack checks the appenders against the msgpack
// library's encoder, which the server used before.
func TestAppendMatchesMsgpack(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	enc := func(f func(e *msgpack.Encoder) error) []byte {
		var buf bytes.Buffer
		e := msgpack.NewEncoder(&buf)
		if err := f(e); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	ints := []int64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
		-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64}
	for range 1000 {
		ints = append(ints, int64(rng.Uint64())>>rng.IntN(64))
	}
	for _, v := range ints {
		if got, want := AppendInt(nil, v), enc(func(e *msgpack.Encoder) error { return e.EncodeInt(v) }); !bytes.Equal(got, want) {
			t.Fatalf("AppendInt(%d) = % x, msgpack % x", v, got, want)
		}
		u := uint64(v)
		if got, want := AppendUint(nil, u), enc(func(e *msgpack.Encoder) error { return e.EncodeUint(u) }); !bytes.Equal(got, want) {
			t.Fatalf("AppendUint(%d) = % x, msgpack % x", u, got, want)
		}
	}
	for _, n := range []int{0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000} {
		s := strings.Repeat("é", n/2) + strings.Repeat("a", n%2)
		if got, want := AppendStr(nil, s), enc(func(e *msgpack.Encoder) error { return e.EncodeString(s) }); !bytes.Equal(got, want) {
			t.Fatalf("AppendStr of %d bytes differs", len(s))
		}
		p := bytes.Repeat([]byte{7}, n)
		if got, want := AppendBin(nil, p), enc(func(e *msgpack.Encoder) error { return e.EncodeBytes(p) }); !bytes.Equal(got, want) {
			t.Fatalf("AppendBin of %d bytes differs", n)
		}
		if got, want := AppendArrayHeader(nil, n), enc(func(e *msgpack.Encoder) error { return e.EncodeArrayLen(n) }); !bytes.Equal(got, want) {
			t.Fatalf("AppendArrayHeader(%d) = % x, msgpack % x", n, got, want)
		}
	}
}

// TestResponseRoundTrip checks that FrameReader reads what AppendResponse
// writes, for every operation.
func TestResponseRoundTrip(t *testing.T) {
	it := Item{Key: "k", Value: []byte(`1`), Revision: 3, CreateRevision: 2, Version: 1}
	for op := OpPut; op <= opLast; op++ {
		if !op.Known() {
			continue // between the groups of operations
		}
		want := Response{ID: uint64(op) * 1000}
		switch schemas[op].result {
		case resultRevision:
			want.Revision = 42
		case resultItem:
			want.Item = it
		case resultList:
			want.Revision, want.Items = 7, []Item{it, it}
		case resultStatus:
			want.Status = []byte(`{"nodeId":"n1"}`)
		case resultLease:
			ms := int64(900)
			want.Lease = Lease{ID: 1<<63 - 1, TTLMs: 1000, RemainingMs: &ms, Keys: []string{"k", "l"}}
		case resultLeases:
			want.Leases = []Lease{{ID: 5, TTLMs: 1000}, {ID: 6, TTLMs: MaxLeaseTTLMs}}
		case resultLock:
			want.Lock = Lock{Name: "l", Token: 1 << 40, Lease: 1<<63 - 1, Value: []byte(`{"a":1}`), Waiters: 3}
		case resultJSON:
			if op != OpQueueClaim { // a claim that found nothing: nil
				want.JSON = []byte(`{"id":"t","epoch":9}`)
			}
		case resultPage:
			keyOnly := Item{Key: "l", Revision: 4, CreateRevision: 4, Version: 1}
			want.Page = ListPage{Revision: 9, Items: []Item{it, keyOnly}, More: true, Next: "m", Count: 0}
		}
		errAnswer := Response{ID: 5, Code: CodeTimeout, Message: "m"}
		frame := AppendFrameHeader(nil, 2)
		frame, _ = AppendResponse(frame, op, &want)
		frame, _ = AppendResponse(frame, op, &errAnswer)
		r, err := NewFrameReader(frame)
		if err != nil {
			t.Fatal(err)
		}
		count, extra, err := r.Header()
		if err != nil || count != 2 || extra != 0 {
			t.Fatalf("%v: header %d %d %v", op, count, extra, err)
		}
		for _, w := range []Response{want, errAnswer} {
			id, kind, more, err := r.ResponseHeader()
			if err != nil || id != w.ID || more != 0 {
				t.Fatalf("%v: response header %d %d %v", op, id, more, err)
			}
			got, err := r.Payload(op, kind)
			if err != nil {
				t.Fatalf("%v: %v", op, err)
			}
			got.ID = id
			if !reflect.DeepEqual(got, w) {
				t.Fatalf("%v: read %+v, want %+v", op, got, w)
			}
		}
		r.Release()
	}
}

func TestFrameVersion(t *testing.T) {
	frame := []byte{0x92, 0x02, 0x90}
	_, err := DecodeRequests(frame, 1)
	if ve, ok := err.(*VersionError); !ok || ve.Version != 2 {
		t.Fatalf("DecodeRequests of a version 2 frame: %v", err)
	}
	r, err := NewFrameReader(frame)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	if _, _, err := r.Header(); err == nil {
		t.Fatal("FrameReader read a version 2 frame")
	}
}

func TestOps(t *testing.T) {
	writes := map[Op]bool{OpPut: true, OpDelete: true, OpTxn: true, OpWorkflowStart: true, OpWorkflowStop: true,
		OpWorkflowUpdate: true, OpNodeRegister: true, OpNodeDeregister: true, OpLeaseGrant: true, OpLeaseRevoke: true,
		OpLockAcquire: true, OpLockRelease: true, OpCampaign: true, OpProclaim: true, OpResign: true,
		OpQueueEnqueue: true, OpQueueClaim: true, OpTaskComplete: true, OpTaskFail: true, OpTaskRequeue: true,
		OpSchedulePut: true, OpScheduleDelete: true}
	for op := Op(0); op <= opLast+1; op++ {
		if op.IsWrite() != writes[op] {
			t.Errorf("%v: IsWrite %v", op, op.IsWrite())
		}
		if op.NeedsWriteAccess() != (writes[op] || op == OpLeaseKeepAlive || op == OpTaskHeartbeat) {
			t.Errorf("%v: NeedsWriteAccess %v", op, op.NeedsWriteAccess())
		}
		if op.Known() != (op >= OpPut && op <= OpWatchCancel || op == OpListPage || op >= OpQueueEnqueue && op <= OpTaskList ||
			op >= OpSchedulePut && op <= OpScheduleDelete || op == OpWorkflowHistory) {
			t.Errorf("%v: Known %v", op, op.Known())
		}
		if op.Known() && schemas[op].name == "" {
			t.Errorf("op %d has no schema", uint64(op))
		}
	}
	if OpTxn.String() != "batch" || Op(99).String() != "op 99" {
		t.Errorf("names: %q %q", OpTxn, Op(99))
	}
}

// FuzzDecodeRequests checks that the request decoder never panics or
// allocates beyond a small multiple of its input, and that every request
// it accepts is written back by AppendArgs (the client's encoder) to bytes
// that decode to the same request.
func FuzzDecodeRequests(f *testing.F) {
	rid := RequestID{Client: "c", Seq: 9}
	seed := []Request{
		{ID: 1, Op: OpPut, Key: "k", Value: []byte(`{"a":1}`), ReqID: rid, Cond: IfRevision(3)},
		{ID: 2, Op: OpGet, Key: "k", Consistency: Local},
		{ID: 3, Op: OpTxn, ReqID: rid, Ops: []TxnOp{{Type: TxnPut, Key: "a", Value: []byte("1")}, {Type: TxnDelete, Key: "b", Cond: IfExists()}}},
		{ID: 4, Op: OpWorkflowStop, Key: "w"},
		{ID: 5, Op: OpStatus},
		{ID: 6, Op: OpPut, Key: "k", Value: []byte(`1`), ReqID: rid, Lease: 0x2a},
		{ID: 7, Op: OpPut, Key: "k", Value: []byte(`1`), TTLMs: 30000},
		{ID: 8, Op: OpLeaseGrant, TTLMs: 1000, Lease: 7, ReqID: rid},
		{ID: 9, Op: OpLeaseRevoke, Lease: 7, ReqID: rid},
		{ID: 10, Op: OpLeaseKeepAlive, Lease: 7},
		{ID: 11, Op: OpLeaseTTL, Lease: 1<<63 - 1},
		{ID: 12, Op: OpLeaseList, Consistency: Local},
		{ID: 13, Op: OpLockAcquire, Key: "l", Lease: 7, WaitMs: 1000, ReqID: rid},
		{ID: 14, Op: OpLockRelease, Key: "l", Token: 99, ReqID: rid},
		{ID: 15, Op: OpLockGet, Key: "l", Consistency: Local},
		{ID: 16, Op: OpCampaign, Key: "e", Lease: 7, Value: []byte(`"v"`), WaitMs: 5},
		{ID: 17, Op: OpProclaim, Key: "e", Token: 3, Value: []byte(`"w"`), ReqID: rid},
		{ID: 18, Op: OpResign, Key: "e", Token: 3},
		{ID: 19, Op: OpLeader, Key: "e"},
		{ID: 20, Op: OpPut, Key: "k", Value: []byte(`1`), ReqID: rid, Fence: Fence{Lock: "l", Token: 4}},
		{ID: 22, Op: OpNodeRegister, Key: "n", TTLMs: 3000},
		{ID: 21, Op: OpTxn, Ops: []TxnOp{{Type: TxnDelete, Key: "b"}}, Fence: Fence{Lock: "l", Token: 4}},
		{ID: 23, Op: OpListPage, Key: "p/", Limit: 100, Start: "p/x", Revision: 77, Mode: ListKeysOnly},
		{ID: 24, Op: OpListPage, Key: "p/", Consistency: Local, Mode: ListCountOnly},
		{ID: 25, Op: OpWatch, Key: "p/", Revision: 12},
		{ID: 26, Op: OpWatch},
		{ID: 27, Op: OpWatchCancel, Watch: 25},
	}
	frame := AppendFrameHeader(nil, len(seed))
	for i := range seed {
		args, n := AppendArgs(nil, &seed[i])
		frame = AppendRequest(frame, seed[i].ID, seed[i].Op, n, args)
	}
	f.Add(frame)
	f.Add([]byte{0x92, 0x01, 0x91, 0x94, 0x01, 0x01, 0xa1, 'k', 0xc6, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x92, 0x01, 0x93, 0x91, 0x05, 0x92, 0x06, 0x63, 0x93, 0x07, 0x01, 0x01})
	f.Add([]byte("\xc1garbage"))
	// A lease id beyond int64, a negative time to live, a put whose lease
	// is nil followed by a time to live.
	f.Add([]byte{0x92, 0x01, 0x91, 0x93, 0x01, 0x11, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x92, 0x01, 0x91, 0x93, 0x01, 0x0f, 0xff})
	f.Add([]byte{0x92, 0x01, 0x91, 0x98, 0x01, 0x01, 0xa1, 'k', 0xc4, 0x01, '1', 0xc0, 0xc0, 0xc0, 0x05})
	// A fence with an empty lock name, one whose token is negative, one
	// that is not an array.
	f.Add([]byte{0x92, 0x01, 0x91, 0x96, 0x01, 0x03, 0xa1, 'k', 0xc0, 0xc0, 0x92, 0xa0, 0x07})
	f.Add([]byte{0x92, 0x01, 0x91, 0x96, 0x01, 0x03, 0xa1, 'k', 0xc0, 0xc0, 0x92, 0xa1, 'l', 0xff})
	f.Add([]byte{0x92, 0x01, 0x91, 0x96, 0x01, 0x03, 0xa1, 'k', 0xc0, 0xc0, 0xa1, 'l'})
	f.Fuzz(func(t *testing.T, b []byte) {
		reqs, err := DecodeRequests(b, 64)
		if err != nil {
			return
		}
		if len(reqs) > 64 {
			t.Fatalf("%d requests decoded, limit 64", len(reqs))
		}
		var good []Request
		again := AppendFrameHeader(nil, 0)
		for _, r := range reqs {
			if r.Bad != "" {
				continue
			}
			args, n := AppendArgs(nil, &r)
			again = AppendRequest(again, r.ID, r.Op, n, args)
			good = append(good, r)
		}
		again = append(AppendFrameHeader(nil, len(good)), again[3:]...)
		reqs2, err := DecodeRequests(again, 64)
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
		if !reflect.DeepEqual(reqs2, good) && !(len(reqs2) == 0 && len(good) == 0) {
			t.Fatalf("re-encoded frame decodes as %+v, want %+v", reqs2, good)
		}
	})
}

// TestDecodeLeaseArgs checks the lease arguments: what an older client
// sends (a put without them) and what a newer one may (a put with them),
// and the values the decoder refuses.
func TestDecodeLeaseArgs(t *testing.T) {
	tests := []struct {
		name string
		req  []byte // one request
		want Request
		bad  string
	}{
		{"old put", []byte{0x94, 0x01, 0x01, 0xa1, 'k', 0xc4, 0x01, '1'}, Request{ID: 1, Op: OpPut, Key: "k", Value: []byte("1")}, ""},
		{"put lease", []byte{0x97, 0x01, 0x01, 0xa1, 'k', 0xc4, 0x01, '1', 0xc0, 0xc0, 0x2a}, Request{ID: 1, Op: OpPut, Key: "k", Value: []byte("1"), Lease: 0x2a}, ""},
		{"put ttl", []byte{0x98, 0x01, 0x01, 0xa1, 'k', 0xc4, 0x01, '1', 0xc0, 0xc0, 0xc0, 0xcd, 0x75, 0x30}, Request{ID: 1, Op: OpPut, Key: "k", Value: []byte("1"), TTLMs: 30000}, ""},
		{"grant", []byte{0x93, 0x01, 0x0f, 0xcd, 0x13, 0x88}, Request{ID: 1, Op: OpLeaseGrant, TTLMs: 5000}, ""},
		{"negative lease", []byte{0x93, 0x01, 0x11, 0xff}, Request{}, "field 2: bad field: -1 is negative"},
		{"huge lease", []byte{0x93, 0x01, 0x12, 0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0}, Request{}, "field 2: bad field: lease id 9223372036854775808 out of range"},
		{"string ttl", []byte{0x93, 0x01, 0x0f, 0xa1, '5'}, Request{}, "field 2: bad field: type 0xa1, want an integer"},
		{"no lease", []byte{0x92, 0x01, 0x10}, Request{}, "operation 16 needs at least 1 arguments, got 0 (see docs/PROTOCOL.md)"},
		{"fenced delete", []byte{0x96, 0x01, 0x03, 0xa1, 'k', 0xc0, 0xc0, 0x92, 0xa1, 'l', 0x07}, Request{ID: 1, Op: OpDelete, Key: "k", Fence: Fence{Lock: "l", Token: 7}}, ""},
		{"fence without lock", []byte{0x96, 0x01, 0x03, 0xa1, 'k', 0xc0, 0xc0, 0x92, 0xa0, 0x07}, Request{}, "field 5: bad field: a fence names a lock"},
		{"fence negative token", []byte{0x96, 0x01, 0x03, 0xa1, 'k', 0xc0, 0xc0, 0x92, 0xa1, 'l', 0xff}, Request{}, "field 5: bad field: -1 is negative"},
		{"fence not array", []byte{0x96, 0x01, 0x03, 0xa1, 'k', 0xc0, 0xc0, 0xa1, 'l'}, Request{}, "field 5: bad field: type 0xa1, want an array"},
		{"acquire no lease", []byte{0x93, 0x01, 0x14, 0xa1, 'l'}, Request{}, "operation 20 needs at least 2 arguments, got 1 (see docs/PROTOCOL.md)"},
	}
	for _, tt := range tests {
		frame := append([]byte{0x92, ProtocolVersion, 0x91}, tt.req...)
		reqs, err := DecodeRequests(frame, 1)
		if err != nil || len(reqs) != 1 {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got := reqs[0]
		if tt.bad != "" {
			if got.Bad != tt.bad {
				t.Errorf("%s: Bad %q, want %q", tt.name, got.Bad, tt.bad)
			}
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
