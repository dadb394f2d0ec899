package kv

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
)

// newHistoryRig is a queueRig whose commands write history, as Store's do.
func newHistoryRig(t *testing.T, opts ...Option) *queueRig {
	r := newQueueRig(t, opts...)
	r.history = true
	return r
}

// historyOf returns workflow id's kept events, oldest first.
func historyOf(t *testing.T, m *Machine, id string) []WorkflowEvent {
	t.Helper()
	evs, _, more, known := m.WorkflowHistory(id, 0, api.MaxWorkflowHistoryPage)
	if !known || more {
		t.Fatalf("history of %q: known %v, more %v", id, known, more)
	}
	return evs
}

func historyTypes(evs []WorkflowEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type
	}
	return out
}

// Every event type appears, in the order of the commands that caused
// it, each at a revision of its own (strictly increasing), with the
// proposer's time, the task, and the claim's epoch and worker; the seed's
// workflow commands answer the workflow key's revision as before, their
// event sharing it; tasks without a workflow, or naming one that does
// not exist, record nothing.
func TestWorkflowHistoryEventsInOrder(t *testing.T) {
	r := newHistoryRig(t)
	start := r.apply(command{Op: opWorkflowStart, Key: "w", Value: []byte(`{"name":"etl"}`), At: 1000})
	if start.Err != nil {
		t.Fatal(start.Err)
	}
	if it, _ := r.m.Get(WorkflowPrefix + "w"); it.Revision != start.Revision {
		t.Fatalf("start answered revision %d, the workflow is at %d", start.Revision, it.Revision)
	}
	enq := func(id, wf string, attempts int) {
		t.Helper()
		res := r.apply(command{Op: opTaskEnqueue, Key: "q", Task: id, Value: []byte(`1`), At: 1000, Attempts: attempts, Workflow: wf})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	enq("a", "w", 2)
	enq("x", "", 0)          // no workflow
	enq("y", "elsewhere", 0) // no such workflow: no history kept
	c1 := r.mustClaim("q", 1100, 1)
	if c1.Task.ID != "a" {
		t.Fatalf("claimed %q", c1.Task.ID)
	}
	if res := r.apply(command{Op: opTaskFail, Key: "q", Task: "a", Epoch: c1.Epoch, Error: "boom", At: 1200}); res.Err != nil {
		t.Fatal(res.Err)
	}
	// A refused (stale) complete records nothing.
	if res := r.apply(command{Op: opTaskComplete, Key: "q", Task: "a", Epoch: c1.Epoch, At: 1250}); !errors.Is(res.Err, ErrStaleEpoch) {
		t.Fatalf("stale complete: %v", res.Err)
	}
	// x and y are ahead of a now (a waits for its backoff until 2200).
	r.mustClaim("q", 1300, 2)
	r.mustClaim("q", 1300, 3)
	c2 := r.mustClaim("q", 2200, 4)
	if c2.Task.ID != "a" {
		t.Fatalf("claimed %q", c2.Task.ID)
	}
	// The claim's lease expires on its last attempt: dead.
	if res := r.apply(command{Op: opLeaseExpire, Leases: []int64{4}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := r.apply(command{Op: opTaskRequeue, Key: "q", Task: "a", At: 2300}); res.Err != nil {
		t.Fatal(res.Err)
	}
	c3 := r.mustClaim("q", 2400, 5)
	if res := r.apply(command{Op: opTaskComplete, Key: "q", Task: "a", Epoch: c3.Epoch, Value: []byte(`"ok"`), At: 2500}); res.Err != nil {
		t.Fatal(res.Err)
	}
	update := r.apply(command{Op: opWorkflowUpdate, Key: "w", Value: []byte(`{"progress":100}`), At: 2600})
	stop := r.apply(command{Op: opWorkflowStop, Key: "w", At: 2700})
	if update.Err != nil || stop.Err != nil {
		t.Fatal(update.Err, stop.Err)
	}
	if it, _ := r.m.Get(WorkflowPrefix + "w"); it.Revision != stop.Revision || update.Revision >= stop.Revision {
		t.Fatalf("update and stop answered %d and %d, the workflow is at %d", update.Revision, stop.Revision, it.Revision)
	}

	evs := historyOf(t, r.m, "w")
	want := []string{api.HistoryStarted, api.HistoryStepEnqueued, api.HistoryClaimed, api.HistoryFailed, api.HistoryRetried,
		api.HistoryClaimed, api.HistoryDead, api.HistoryRetried, api.HistoryClaimed, api.HistoryCompleted,
		api.HistoryUpdated, api.HistoryStopped}
	if got := historyTypes(evs); !slices.Equal(got, want) {
		t.Fatalf("history %v\nwant    %v", got, want)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Revision <= evs[i-1].Revision {
			t.Fatalf("event %d at revision %d after %d", i, evs[i].Revision, evs[i-1].Revision)
		}
	}
	if evs[0].Revision != start.Revision || evs[10].Revision != update.Revision || evs[11].Revision != stop.Revision {
		t.Fatalf("workflow command events at %d, %d, %d; commands at %d, %d, %d",
			evs[0].Revision, evs[10].Revision, evs[11].Revision, start.Revision, update.Revision, stop.Revision)
	}
	checks := []struct {
		i    int
		want WorkflowEvent
	}{
		{0, WorkflowEvent{Type: api.HistoryStarted, Time: "1970-01-01T00:00:01.000Z"}},
		{1, WorkflowEvent{Type: api.HistoryStepEnqueued, Time: "1970-01-01T00:00:01.000Z", Queue: "q", Task: "a"}},
		{2, WorkflowEvent{Type: api.HistoryClaimed, Time: "1970-01-01T00:00:01.100Z", Queue: "q", Task: "a", Attempt: 1, Epoch: c1.Epoch, Worker: "w"}},
		{3, WorkflowEvent{Type: api.HistoryFailed, Time: "1970-01-01T00:00:01.200Z", Queue: "q", Task: "a", Attempt: 1, Epoch: c1.Epoch, Worker: "w", Error: "boom"}},
		{4, WorkflowEvent{Type: api.HistoryRetried, Time: "1970-01-01T00:00:01.200Z", Queue: "q", Task: "a", Attempt: 1, Epoch: c1.Epoch, Worker: "w", Error: "boom", ReadyAt: "1970-01-01T00:00:02.200Z"}},
		{6, WorkflowEvent{Type: api.HistoryDead, Time: "1970-01-01T00:00:02.200Z", Queue: "q", Task: "a", Attempt: 2, Epoch: c2.Epoch, Worker: "w", Error: "the claim's lease expired or was revoked"}},
		{9, WorkflowEvent{Type: api.HistoryCompleted, Time: "1970-01-01T00:00:02.500Z", Queue: "q", Task: "a", Attempt: 1, Epoch: c3.Epoch, Worker: "w"}},
		{11, WorkflowEvent{Type: api.HistoryStopped, Time: "1970-01-01T00:00:02.700Z"}},
	}
	for _, c := range checks {
		got := evs[c.i]
		got.Revision = 0
		if got != c.want {
			t.Errorf("event %d: %+v\nwant      %+v", c.i, got, c.want)
		}
	}
	if _, _, _, known := r.m.WorkflowHistory("elsewhere", 0, 10); known {
		t.Fatal("a workflow that does not exist has a history")
	}
	// Reading from a revision skips the events before it.
	from, _, _, _ := r.m.WorkflowHistory("w", evs[5].Revision, 3)
	if len(from) != 3 || from[0] != evs[5] || from[2] != evs[7] {
		t.Fatalf("from revision %d: %+v", evs[5].Revision, from)
	}
}

// A workflow keeps its newest events up to the retention bound: each new
// one drops the oldest in the same apply (a delete at the new event's
// revision, so watchers see both together). When the state is full, the
// workflow's oldest event makes room for its newest.
func TestWorkflowHistoryRetention(t *testing.T) {
	r := newHistoryRig(t, WithWorkflowHistory(5, 100))
	w, err := r.m.Watch(context.Background(), api.WorkflowHistoryKeyPrefix("w"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r.apply(command{Op: opWorkflowStart, Key: "w", At: 1})
	var last Result
	for i := range 9 {
		last = r.apply(command{Op: opWorkflowUpdate, Key: "w", Value: []byte(`{"i":` + strconv.Itoa(i) + `}`), At: int64(2 + i)})
		if last.Err != nil {
			t.Fatal(last.Err)
		}
	}
	evs := historyOf(t, r.m, "w")
	if len(evs) != 5 || evs[4].Revision != last.Revision || evs[0].Revision != last.Revision-4 {
		t.Fatalf("kept %d events (%+v), want the 5 newest up to revision %d", len(evs), evs, last.Revision)
	}
	// The watcher saw each drop with the event that caused it.
	var puts, deletes int
	for puts < 10 {
		resp := <-w.C()
		for _, ev := range resp.Events {
			switch ev.Type {
			case EventPut:
				puts++
			case EventDelete:
				deletes++
				if !slices.ContainsFunc(resp.Events, func(o Event) bool {
					return o.Type == EventPut && o.Item.Revision == ev.Item.Revision
				}) {
					t.Fatalf("a drop at revision %d apart from its new event", ev.Item.Revision)
				}
			}
		}
	}
	if deletes != 5 {
		t.Fatalf("watched %d drops, want 5", deletes)
	}

	// The total bound drops the oldest event of any workflow; history
	// items are not keys for the key limit.
	total := newHistoryRig(t, WithWorkflowHistory(10, 3), WithMaxKeys(2))
	for i, c := range []command{
		{Op: opWorkflowStart, Key: "a", At: 1},
		{Op: opWorkflowStart, Key: "b", At: 2},
		{Op: opWorkflowUpdate, Key: "a", Value: []byte(`{}`), At: 3},
		{Op: opTaskEnqueue, Key: "q", Task: "t", Value: []byte(`1`), At: 4, Workflow: "b"},
	} {
		if res := total.apply(c); res.Err != nil {
			t.Fatalf("command %d: %v", i, res.Err)
		}
	}
	a, b := historyOf(t, total.m, "a"), historyOf(t, total.m, "b")
	if got := append(historyTypes(a), historyTypes(b)...); !slices.Equal(got, []string{api.HistoryUpdated, api.HistoryStarted, api.HistoryStepEnqueued}) {
		t.Fatalf("histories of a and b: %v", got)
	}
	if st := total.m.Stats(); st.Keys != 2 || total.m.Len() != 2 {
		t.Fatalf("keys %d (Len %d), want the two workflows", st.Keys, total.m.Len())
	}
	if res := total.apply(command{Op: opPut, Key: "third", Value: []byte(`1`)}); !errors.Is(res.Err, ErrStateFull) {
		t.Fatalf("a third key beyond the limit of 2: %v", res.Err)
	}
}

// randomHistoryCommands returns n random workflow and queue commands over
// three workflows, with lease expiries: every history path, with
// retention and a full state.
func randomHistoryCommands(rng *rand.Rand, n int) [][]byte {
	var out [][]byte
	at := int64(1000)
	var leases []int64
	for i := range n {
		at += int64(rng.IntN(300))
		wf := "w" + strconv.Itoa(rng.IntN(3))
		id := "t" + strconv.Itoa(rng.IntN(20))
		var c command
		switch rng.IntN(9) {
		case 0:
			c = command{Op: opWorkflowStart, Key: wf, At: at}
		case 1:
			c = command{Op: opWorkflowUpdate, Key: wf, Value: []byte(`{"i":` + strconv.Itoa(i) + `}`), At: at}
		case 2:
			c = command{Op: opWorkflowStop, Key: wf, At: at}
		case 3:
			c = command{Op: opTaskEnqueue, Key: "q", Task: id, Value: []byte(`1`), At: at, Attempts: 1 + rng.IntN(3), Workflow: wf}
		case 4, 5:
			l := int64(i + 1)
			leases = append(leases, l)
			c = command{Op: opTaskClaim, Key: "q", Worker: "wk", Lease: l, TTL: 2000, At: at}
		case 6:
			c = command{Op: opTaskComplete, Key: "q", Task: id, Epoch: int64(rng.IntN(len(out) + 1)), At: at}
		case 7:
			retry := int64(rng.IntN(500))
			c = command{Op: opTaskFail, Key: "q", Task: id, Epoch: int64(rng.IntN(len(out) + 1)), Error: "e", Retry: &retry, At: at}
		default:
			if len(leases) == 0 {
				continue
			}
			c = command{Op: opLeaseExpire, Leases: []int64{leases[rng.IntN(len(leases))], leases[rng.IntN(len(leases))]}}
		}
		b, err := encodeCommand(withHistory(c))
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	return out
}

// History is deterministic and in the snapshot: two machines applying the
// same commands give the same bytes, and one restored part way (history
// and all) goes on to them too; every workflow's history stays within
// its bound, in revision order.
func TestWorkflowHistoryDeterministicAndSnapshot(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed))
	cmds := randomHistoryCommands(rng, 800)
	opts := []Option{WithWorkflowHistory(6, 14), WithMaxKeys(8)}
	a, b := NewMachine(opts...), NewMachine(opts...)
	var restored *Machine
	for i, c := range cmds {
		idx := uint64(i + 1)
		ra, rb := a.Apply(idx, c).(Result), b.Apply(idx, c).(Result)
		if (ra.Err == nil) != (rb.Err == nil) || ra.Revision != rb.Revision {
			t.Fatalf("command %d: %+v vs %+v", i, ra, rb)
		}
		if restored != nil {
			if rr := restored.Apply(idx, c).(Result); rr.Revision != ra.Revision {
				t.Fatalf("command %d on the restored machine: %+v vs %+v", i, rr, ra)
			}
		}
		if i == len(cmds)/2 {
			restored = NewMachine(opts...)
			if err := restored.Restore(consensus.Position{}, bytes.NewReader(snapshotBytes(t, a))); err != nil {
				t.Fatal(err)
			}
			for w := range 3 {
				id := "w" + strconv.Itoa(w)
				got, _, _, _ := restored.WorkflowHistory(id, 0, 100)
				want, _, _, _ := a.WorkflowHistory(id, 0, 100)
				if !slices.Equal(got, want) {
					t.Fatalf("restored history of %s: %+v, want %+v", id, got, want)
				}
			}
		}
	}
	sa := snapshotBytes(t, a)
	if !bytes.Equal(sa, snapshotBytes(t, b)) || !bytes.Equal(sa, snapshotBytes(t, restored)) {
		t.Fatal("the same commands gave different states")
	}
	total := 0
	for w := range 3 {
		evs, _, _, _ := a.WorkflowHistory("w"+strconv.Itoa(w), 0, 100)
		if len(evs) > 6 {
			t.Fatalf("w%d keeps %d events, more than 6", w, len(evs))
		}
		for i := 1; i < len(evs); i++ {
			if evs[i].Revision <= evs[i-1].Revision {
				t.Fatalf("w%d: revision %d after %d", w, evs[i].Revision, evs[i-1].Revision)
			}
		}
		total += len(evs)
	}
	if total == 0 {
		t.Fatal("the random commands recorded no history")
	}
}

// Requests cannot forge history: a put under the reserved prefix is
// refused with ErrInvalidKey before anything is proposed, by every write
// path; a delete (pruning) is allowed. The store reads history by pages
// from a revision, and an unknown workflow is ErrWorkflowNotFound.
func TestStoreWorkflowHistory(t *testing.T) {
	s, l := newLocalStore(WithWorkflowHistory(50, 1000))
	ctx := context.Background()
	if _, err := s.StartWorkflow(ctx, "w", nil); err != nil {
		t.Fatal(err)
	}
	forged := api.WorkflowHistoryKey("w", 99)
	proposed := l.index
	for name, write := range map[string]func() error{
		"put":      func() error { _, err := s.Put(ctx, forged, []byte(`{"type":"completed"}`)); return err },
		"put with": func() error { _, err := s.PutWith(ctx, forged, []byte(`{}`), PutOptions{}); return err },
		"batch": func() error {
			_, err := s.Batch(ctx, []Op{{Type: OpPut, Key: "fine", Value: []byte(`1`)}, {Type: OpPut, Key: forged, Value: []byte(`1`)}})
			return err
		},
		"etcd txn": func() error {
			_, _, err := s.EtcdTxn(ctx, &EtcdTxn{Success: []EtcdOp{{Type: EtcdPut, Key: forged, Value: []byte(`1`)}}})
			return err
		},
		"update": func() error {
			_, err := s.Update(ctx, forged, func(Item, bool) ([]byte, error) { return []byte(`1`), nil })
			return err
		},
	} {
		if err := write(); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s under the history prefix: %v, want ErrInvalidKey", name, err)
		}
	}
	if l.index != proposed {
		t.Fatalf("%d refused write(s) reached the log", l.index-proposed)
	}
	for i := range 4 {
		if _, err := s.UpdateWorkflowState(ctx, "w", []byte(`{"i":`+strconv.Itoa(i)+`}`)); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.WorkflowHistory(ctx, "w", 0, api.MaxWorkflowHistoryPage, Linearizable)
	if err != nil || len(all.Events) != 5 || all.More || all.Revision != s.machine.Revision() {
		t.Fatalf("history %+v, %v", all, err)
	}
	page, err := s.WorkflowHistory(ctx, "w", all.Events[1].Revision, 2, Linearizable)
	if err != nil || !page.More || len(page.Events) != 2 || page.Events[0] != all.Events[1] || page.Events[1] != all.Events[2] {
		t.Fatalf("page from %d: %+v, %v", all.Events[1].Revision, page, err)
	}
	// Pruning by a delete is allowed, and the retention count follows it.
	if _, err := s.Delete(ctx, api.WorkflowHistoryKey("w", all.Events[0].Revision)); err != nil {
		t.Fatalf("delete of a history event: %v", err)
	}
	if h, _ := s.WorkflowHistory(ctx, "w", 0, 10, Local); len(h.Events) != 4 {
		t.Fatalf("after a delete: %+v", h)
	}
	for _, tc := range []struct {
		id    string
		from  int64
		limit int
		want  error
	}{
		{"nope", 0, 10, ErrWorkflowNotFound},
		{"", 0, 10, ErrInvalidKey},
		{"a/b", 0, 10, ErrInvalidKey},
		{"w", -1, 10, ErrInvalidRevision},
		{"w", 0, 0, ErrBadCommand},
		{"w", 0, api.MaxWorkflowHistoryPage + 1, ErrBadCommand},
	} {
		if _, err := s.WorkflowHistory(ctx, tc.id, tc.from, tc.limit, Linearizable); !errors.Is(err, tc.want) {
			t.Errorf("history of %q from %d limit %d: %v, want %v", tc.id, tc.from, tc.limit, err, tc.want)
		}
	}
}

// Entries written before history existed (without the History field)
// apply as they did, writing none: a node that replays such a log after
// an upgrade ends with the state of its peers, which applied them before.
// Entries this version encodes write it.
func TestWorkflowHistoryNotFromOldEntries(t *testing.T) {
	m := NewMachine()
	start := command{Op: opWorkflowStart, Key: "w", At: 1}
	if r := m.Apply(1, appendCommand(nil, &start)).(Result); r.Err != nil { // v0.7.0's encoding
		t.Fatal(r.Err)
	}
	enq, err := msgpack.Marshal(&command{Op: opTaskEnqueue, Key: "q", Task: "a", Value: []byte(`1`), At: 2, Workflow: "w"})
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Apply(2, enq).(Result); r.Err != nil {
		t.Fatal(r.Err)
	}
	if evs := historyOf(t, m, "w"); len(evs) != 0 {
		t.Fatalf("old entries wrote history: %+v", evs)
	}
	if r := m.Apply(3, mustCmd(t, withHistory(command{Op: opWorkflowUpdate, Key: "w", Value: []byte(`{}`), At: 3}))).(Result); r.Err != nil {
		t.Fatal(r.Err)
	}
	if evs := historyOf(t, m, "w"); len(evs) != 1 || evs[0].Type != api.HistoryUpdated {
		t.Fatalf("a new entry's history: %+v", evs)
	}
}
