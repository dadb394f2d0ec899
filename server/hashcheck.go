package server

// The divergence check (docs/OPERATIONS.md, "A member whose state
// diverged"). Every HashCheckInterval the leader proposes a hash check
// (kv.Store.ProposeHashCheck): each member hashes its state as it stands
// after that entry. Every member then reads the others' recent hashes
// from their /v1/status and compares, at the newest index a majority of
// the members have hashed: a member whose hash differs from the one a
// majority share has diverged. Each member judges for itself, so the
// diverged one knows without being told: it raises the alarm, answers
// every read 503 (kv.ErrDiverged) and stays so until an operator restores
// it (a restart rebuilds its state from its snapshot and log; a member
// whose disk holds the bad state is replaced). The others show the alarm
// on their /v1/status until the member agrees again.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// DefaultHashCheckInterval is how often the leader asks for a hash check
// when Config.HashCheckInterval is zero.
const DefaultHashCheckInterval = 5 * time.Minute

// hashChecker runs the divergence check of one server.
type hashChecker struct {
	s        *Server
	interval time.Duration
	stop     chan struct{}
	done     chan struct{}

	mu     sync.Mutex
	alarms map[string]api.Alarm // by member
}

func newHashChecker(s *Server, interval time.Duration) *hashChecker {
	if interval == 0 {
		interval = DefaultHashCheckInterval
	}
	return &hashChecker{s: s, interval: interval, stop: make(chan struct{}), done: make(chan struct{}),
		alarms: map[string]api.Alarm{}}
}

func (c *hashChecker) start() {
	go func() {
		defer close(c.done)
		t := time.NewTicker(c.interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-c.stop:
				return
			}
			c.round()
		}
	}()
}

func (c *hashChecker) close() {
	close(c.stop)
	<-c.done
}

// round proposes a check (on the leader) and compares the members' hashes.
func (c *hashChecker) round() {
	ctx, cancel := context.WithTimeout(context.Background(), c.interval)
	defer cancel()
	s := c.s
	if s.node.IsLeader() {
		if err := s.store.ProposeHashCheck(ctx); err != nil {
			s.log.Debug("hash check not proposed", "err", err)
		}
	}
	c.compare(ctx)
}

// compare reads every member's recent hashes and judges them.
func (c *hashChecker) compare(ctx context.Context) {
	s := c.s
	self := s.node.Status().NodeID
	members := s.node.Members()
	views := map[string][]api.StateHash{self: s.store.StateHashes()}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range members {
		if m.ID == self || m.HTTPAddr == "" {
			continue
		}
		wg.Go(func() {
			hashes, err := c.fetch(ctx, m.HTTPAddr)
			if err != nil {
				return // unreachable: judged without it
			}
			mu.Lock()
			views[m.ID] = hashes
			mu.Unlock()
		})
	}
	wg.Wait()
	index, diverged, ok := judge(views, len(members)/2+1)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range views {
		if _, bad := diverged[id]; bad {
			continue
		}
		if id != self { // this member's own alarm stays until it is restored
			delete(c.alarms, id)
		}
	}
	for id := range diverged {
		if _, known := c.alarms[id]; known {
			continue
		}
		msg := fmt.Sprintf("member %s's state hash at index %d differs from the one a majority of the %d members share; it answers no reads until restored (docs/OPERATIONS.md)",
			id, index, len(members))
		c.alarms[id] = api.Alarm{Member: id, Alarm: api.AlarmDiverged, Index: index, Message: msg}
		s.log.Error("state diverged", "member", id, "index", index)
		if id == self {
			s.store.SetDiverged(fmt.Errorf("%w: %s", kv.ErrDiverged, msg))
		}
	}
}

// judge compares the members' hashes (views, by member) at the newest
// index that at least quorum of them have hashed, and returns the members
// whose hash there differs from the one at least quorum share. ok is false
// when no index has quorum hashes, or no hash has quorum votes there.
func judge(views map[string][]api.StateHash, quorum int) (index uint64, diverged map[string]struct{}, ok bool) {
	held := map[uint64]int{}
	for _, hashes := range views {
		for _, h := range hashes {
			held[h.Index]++
		}
	}
	var indexes []uint64
	for i, n := range held {
		if n >= quorum {
			indexes = append(indexes, i)
		}
	}
	if len(indexes) == 0 {
		return 0, nil, false
	}
	sort.Slice(indexes, func(a, b int) bool { return indexes[a] > indexes[b] })
	index = indexes[0]
	at := map[string]string{} // member -> hash at index
	votes := map[string]int{}
	for id, hashes := range views {
		for _, h := range hashes {
			if h.Index == index {
				at[id] = h.Hash
				votes[h.Hash]++
			}
		}
	}
	majority := ""
	for h, n := range votes {
		if n >= quorum {
			majority = h
		}
	}
	if majority == "" {
		return index, nil, false
	}
	diverged = map[string]struct{}{}
	for id, h := range at {
		if h != majority {
			diverged[id] = struct{}{}
		}
	}
	return index, diverged, true
}

// fetch reads the stateHashes of a member's GET /v1/status.
func (c *hashChecker) fetch(ctx context.Context, httpAddr string) ([]api.StateHash, error) {
	h := c.s.api
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.opts.members.url(httpAddr, "/v1/status"), nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.memberClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status answered %s", resp.Status)
	}
	var st struct {
		StateHashes []api.StateHash `json:"stateHashes"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&st); err != nil {
		return nil, err
	}
	return st.StateHashes, nil
}

// list returns the alarms, by member.
func (c *hashChecker) list() []api.Alarm {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]api.Alarm, 0, len(c.alarms))
	for _, a := range c.alarms {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Member < out[j].Member })
	return out
}
