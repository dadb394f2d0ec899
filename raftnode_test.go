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
