package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// TestRaftNodeCombinedProposals proposes from many goroutines at once on a
// one-voter raft and checks that every command is committed exactly once,
// however the proposals were combined into batches.
func TestRaftNodeCombinedProposals(t *testing.T) {
	ms := raft.NewMemoryStorage()
	r, err := newRaftNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: ms,
		MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 16, Logger: raftLogger{slog.New(slog.DiscardHandler)}}, []raft.Peer{{ID: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Campaign(); err != nil {
		t.Fatal(err)
	}

	const workers, each = 8, 100
	committed := make(map[string]int)
	var mu sync.Mutex
	stop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() { // a minimal Ready loop over memory storage
		defer close(loopDone)
		for {
			select {
			case <-r.wake:
			case <-stop:
				return
			}
			for {
				rd, ok := r.ready()
				if !ok {
					break
				}
				if err := ms.Append(rd.Entries); err != nil {
					t.Error(err)
				}
				if !raft.IsEmptyHardState(rd.HardState) {
					_ = ms.SetHardState(rd.HardState)
				}
				mu.Lock()
				for _, e := range rd.CommittedEntries {
					if e.GetType() == raftpb.EntryNormal && len(e.GetData()) > 0 {
						committed[string(e.GetData())]++
					}
				}
				mu.Unlock()
				r.advance(rd)
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for r.Status().RaftState != raft.StateLeader {
		if time.Now().After(deadline) {
			t.Fatal("no leader after 10s")
		}
		r.Tick()
		time.Sleep(time.Millisecond)
	}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := r.Propose(fmt.Appendf(nil, "w%d-%d", w, i)); err != nil {
					t.Errorf("propose: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for {
		mu.Lock()
		n := len(committed)
		mu.Unlock()
		if n == workers*each {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d commands committed after 10s", n, workers*each)
		}
		r.poke()
		time.Sleep(time.Millisecond)
	}
	close(stop)
	<-loopDone
	for data, times := range committed {
		if times != 1 {
			t.Errorf("%s committed %d times", data, times)
		}
	}

	r.stop()
	if err := r.Propose([]byte("late")); !errors.Is(err, raft.ErrStopped) {
		t.Fatalf("propose after stop: %v, want raft.ErrStopped", err)
	}
}

// TestRaftNodeCombinesWaitingProposals holds the raft lock, as the Ready
// loop does while it takes a Ready, and checks that the proposals that
// arrive meanwhile join one batch, which the first of them to get the
// lock steps as one proposal message for all.
func TestRaftNodeCombinesWaitingProposals(t *testing.T) {
	ms := raft.NewMemoryStorage()
	r, err := newRaftNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: ms,
		MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 16, Logger: raftLogger{slog.New(slog.DiscardHandler)}}, []raft.Peer{{ID: 1}})
	if err != nil {
		t.Fatal(err)
	}
	// One voter: it leads once its bootstrap entries are handled and its
	// own vote is saved; the memory storage stands in for the Ready loop,
	// which also saves the new leader's empty entry before the test goes on.
	for i := 0; ; i++ {
		rd, ok := r.ready()
		if !ok {
			if r.Status().RaftState == raft.StateLeader {
				break
			}
			if i > 100 {
				t.Fatal("not leader after 100 rounds")
			}
			if err := r.Campaign(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		_ = ms.Append(rd.Entries)
		if !raft.IsEmptyHardState(rd.HardState) {
			_ = ms.SetHardState(rd.HardState)
		}
		r.advance(rd)
	}

	const n = 16
	r.mu.Lock()
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- r.Propose(fmt.Appendf(nil, "p%d", i)) }()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.propMu.Lock()
		joined := 0
		if r.open != nil {
			joined = len(r.open.ents)
		}
		r.propMu.Unlock()
		if joined == n {
			break
		}
		if time.Now().After(deadline) {
			r.mu.Unlock()
			t.Fatalf("%d of %d proposals joined the open batch after 10s", joined, n)
		}
		time.Sleep(time.Millisecond)
	}
	r.mu.Unlock()
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("propose: %v", err)
		}
	}
	r.propMu.Lock()
	open := r.open
	r.propMu.Unlock()
	if open != nil {
		t.Fatalf("a batch of %d is still open after every proposer returned", len(open.ents))
	}
	// raft took every one of them.
	rd, ok := r.ready()
	if !ok || len(rd.Entries) != n {
		t.Fatalf("Ready with %d entries (ok=%v), want the %d combined proposals", len(rd.Entries), ok, n)
	}
}
