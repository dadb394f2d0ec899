package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/kv"
)

// Failover writers: how many, and how long they write before the kill
// and after the first write acknowledged after it.
const (
	failoverWriters = 4
	failoverBefore  = time.Second
	failoverAfter   = time.Second
)

// demoWrite is one acknowledged write of the failover demo.
type demoWrite struct {
	key, value  string
	sent, acked time.Time
	revision    int64
}

// demoFailover: kill -9 of the leader under writes; time without a
// leader, time to the next acknowledged write, the killed node restarted
// and every acknowledged write checked on every node.
func demoFailover(ctx context.Context, d *demo) error {
	if err := d.start(0, 1, 2); err != nil {
		return err
	}
	li, st, err := d.elected(ctx)
	if err != nil {
		return err
	}
	d.say("leader elected: %s in term %d", d.id(li), st.Term)

	// Writers reach the cluster through the Go client, the leader first
	// in its endpoint list: when it dies, the client moves on, retrying a
	// write that lost its answer with the same request id.
	endpoints := []string{d.lc.nodes[li].http}
	for i, n := range d.lc.nodes {
		if i != li {
			endpoints = append(endpoints, n.http)
		}
	}
	wctx, stopWriters := context.WithCancel(ctx)
	defer stopWriters()
	var (
		mu     sync.Mutex
		writes []demoWrite
		failed int // writes not acknowledged: not applied, or of unknown outcome
		wg     sync.WaitGroup
	)
	firstAck := make(chan struct{}, 1)
	for w := range failoverWriters {
		c, err := client.New(client.Config{Endpoints: endpoints, RetryBackoff: 10 * time.Millisecond})
		if err != nil {
			return err
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; wctx.Err() == nil; seq++ {
				key := fmt.Sprintf("orders/w%d/%06d", w, seq)
				value := fmt.Sprintf(`{"writer":%d,"seq":%d}`, w, seq)
				sent := time.Now()
				rev, err := c.Put(wctx, key, []byte(value))
				acked := time.Now()
				mu.Lock()
				if err == nil {
					writes = append(writes, demoWrite{key: key, value: value, sent: sent, acked: acked, revision: rev})
					select {
					case firstAck <- struct{}{}:
					default:
					}
				} else if wctx.Err() == nil {
					failed++
				}
				mu.Unlock()
				_ = sleepOrDone(wctx, time.Millisecond)
			}
		}()
	}
	d.say("%d writers put orders/w<writer>/<seq> through the Go client, endpoints %s first", failoverWriters, d.id(li))
	if err := sleepOrDone(ctx, failoverBefore); err != nil {
		return err
	}
	mu.Lock()
	before := len(writes)
	mu.Unlock()
	if before == 0 {
		return fmt.Errorf("no write acknowledged in %v", failoverBefore)
	}
	d.say("%d writes acknowledged so far", before)

	var survivors []int
	for i := range d.lc.nodes {
		if i != li {
			survivors = append(survivors, i)
		}
	}
	killed := d.id(li)
	pid := d.lc.pid(li)
	killedAt := time.Now()
	d.lc.kill(li)
	d.say("kill -9 %s (pid %d), the leader in term %d", killed, pid, st.Term)

	// The first moment a survivor names a new leader.
	var newLeader consensus.Status
	lctx, cancel := context.WithTimeout(ctx, demoBound)
	defer cancel()
	for newLeader.LeaderID == "" {
		for _, i := range survivors {
			if s, err := fetchStatus(lctx, d.lc.nodes[i].http); err == nil && s.LeaderID != "" && s.LeaderID != killed {
				newLeader = s
				break
			}
		}
		if newLeader.LeaderID == "" {
			if err := sleepOrDone(lctx, time.Millisecond); err != nil {
				return fmt.Errorf("no new leader: %w", err)
			}
		}
	}
	leaderless := time.Since(killedAt)
	who := fmt.Sprintf("%s became the leader", newLeader.LeaderID)
	if newLeader.NodeID != newLeader.LeaderID {
		who = fmt.Sprintf("%s follows %s", newLeader.NodeID, newLeader.LeaderID)
	}
	d.say("the cluster was without a leader for %v: %s in term %d", leaderless.Round(time.Microsecond), who, newLeader.Term)

	// The first write acknowledged that was sent after the kill.
	var firstAfter time.Duration
	for firstAfter == 0 {
		mu.Lock()
		for _, w := range writes {
			if w.sent.After(killedAt) && (firstAfter == 0 || w.acked.Sub(killedAt) < firstAfter) {
				firstAfter = w.acked.Sub(killedAt)
			}
		}
		mu.Unlock()
		if firstAfter == 0 {
			select {
			case <-firstAck:
			case <-lctx.Done():
				return fmt.Errorf("no write acknowledged after the kill: %w", lctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	d.say("first write acknowledged %v after the kill (sent after it, through a surviving node)", firstAfter.Round(time.Microsecond))
	if err := sleepOrDone(ctx, failoverAfter); err != nil {
		return err
	}
	stopWriters()
	wg.Wait()
	d.say("writers stopped: %d writes acknowledged, %d failed", len(writes), failed)

	kst, took, err := d.restart(ctx, li)
	if err != nil {
		return err
	}
	d.say("%s restarted on its data directory and caught up in %v: applied index %d, following %s in term %d",
		killed, took, kst.AppliedIndex, kst.LeaderID, kst.Term)

	// Every acknowledged write, on every node, with its value, applied
	// once (version 1: each key is written once).
	want := make(map[string]demoWrite, len(writes))
	for _, w := range writes {
		want[w.key] = w
	}
	for i := range d.lc.nodes {
		if err := d.lc.waitCaughtUp(ctx, i, demoBound); err != nil {
			return err
		}
		c, err := d.via(i)
		if err != nil {
			return err
		}
		items, err := collectItems(c.List(ctx, "orders/", client.WithConsistency(kv.Local)))
		if err != nil {
			return fmt.Errorf("local list on %s: %w", d.id(i), err)
		}
		got := make(map[string]kv.Item, len(items))
		for _, it := range items {
			got[it.Key] = it
		}
		var missing []string
		for k, w := range want {
			it, ok := got[k]
			if !ok || it.Revision != w.revision || string(it.Value) != w.value || it.Version != 1 {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			return fmt.Errorf("%s: %d of %d acknowledged writes missing or changed, first %s", d.id(i), len(missing), len(want), missing[0])
		}
		note := ""
		if i == li {
			note = " (the node that was killed)"
		}
		d.say("  %s%s: all %d acknowledged writes present, each with its value, revision and version 1 (applied once)",
			d.id(i), note, len(want))
	}
	d.say("summary: %d acknowledged writes, none lost; leaderless for %v, first write %v after the kill",
		len(want), leaderless.Round(time.Microsecond), firstAfter.Round(time.Microsecond))
	return nil
}
