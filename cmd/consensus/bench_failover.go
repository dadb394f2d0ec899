package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unrdf/consensus/bench"
)

// failoverRun is one kill of the leader.
type failoverRun struct {
	Killed    string `json:"killed"`
	NewLeader string `json:"newLeader"`
	// WriteAfter is the time from the kill to the first acknowledged
	// write through a surviving node.
	WriteAfter time.Duration `json:"writeAfterNs"`
	// Attempts counts the writes tried until then.
	Attempts int `json:"attempts"`
	// CatchUp is the time from restarting the killed node until it has
	// applied everything the leader had committed (the last restart's,
	// when Restarts > 0).
	CatchUp time.Duration `json:"catchUpNs"`
	// Restarts counts the extra kill and restart cycles needed because
	// the restarted node had not caught up within catchUpBound.
	Restarts int `json:"restarts"`
}

// failoverReport is the distribution of WriteAfter over the runs.
type failoverReport struct {
	Runs []failoverRun `json:"runs"`
	Min  time.Duration `json:"minNs"`
	P50  time.Duration `json:"p50Ns"`
	P90  time.Duration `json:"p90Ns"`
	Max  time.Duration `json:"maxNs"`
}

func summariseFailover(runs []failoverRun) *failoverReport {
	r := &failoverReport{Runs: runs}
	samples := make([]time.Duration, len(runs))
	for i, run := range runs {
		samples[i] = run.WriteAfter
	}
	if len(samples) > 0 {
		l := bench.Summarise(samples)
		r.Min, r.P50, r.P90, r.Max = samples[0], l.P50, l.P90, l.Max
	}
	return r
}

// Failover probing: a new write every failoverProbeEvery, each bounded by
// failoverProbeTimeout (a write forwarded to the dead leader hangs until
// then), at most failoverMaxInFlight at once, for at most failoverBound.
const (
	failoverProbeEvery   = 2 * time.Millisecond
	failoverProbeTimeout = 500 * time.Millisecond
	failoverMaxInFlight  = 256
	failoverBound        = 30 * time.Second
)

func runFailover(ctx context.Context, lc *benchCluster, n int, restartDelay time.Duration, text io.Writer) (*failoverReport, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: failoverMaxInFlight, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	fmt.Fprintf(text, "failover: %d runs; kill -9 the leader, time until a write through a survivor succeeds\n\n", n)
	fmt.Fprintf(text, "%-4s %-7s %-10s %12s %9s %12s %9s\n", "run", "killed", "new leader", "write after", "attempts", "catch-up", "restarts")
	var runs []failoverRun
	for k := range n {
		if err := lc.waitStable(ctx, 30*time.Second); err != nil {
			return summariseFailover(runs), err
		}
		run, err := failoverOnce(ctx, lc, hc, k, restartDelay)
		if err != nil {
			return summariseFailover(runs), fmt.Errorf("failover run %d: %w", k+1, err)
		}
		runs = append(runs, run)
		fmt.Fprintf(text, "%-4d %-7s %-10s %12s %9d %12s %9d\n", k+1, run.Killed, run.NewLeader,
			bench.FormatDuration(run.WriteAfter), run.Attempts, bench.FormatDuration(run.CatchUp), run.Restarts)
	}
	r := summariseFailover(runs)
	fmt.Fprintf(text, "\nwrite after kill: min %s  p50 %s  p90 %s  max %s  (%d runs)\n",
		bench.FormatDuration(r.Min), bench.FormatDuration(r.P50), bench.FormatDuration(r.P90),
		bench.FormatDuration(r.Max), len(runs))
	return r, nil
}

// catchUpBound bounds the wait for a restarted node to catch up;
// maxRestarts bounds the extra kills and restarts of one that does not.
const (
	catchUpBound = 10 * time.Second
	maxRestarts  = 3
)

func failoverOnce(ctx context.Context, lc *benchCluster, hc *http.Client, k int, restartDelay time.Duration) (failoverRun, error) {
	li, _ := lc.leader(ctx)
	if li < 0 {
		return failoverRun{}, errors.New("no leader")
	}
	var survivors []int
	for i := range lc.nodes {
		if i != li {
			survivors = append(survivors, i)
			// Open a connection to each survivor before the kill.
			if _, err := fetchStatus(ctx, lc.nodes[i].http); err != nil {
				return failoverRun{}, err
			}
		}
	}
	run := failoverRun{Killed: lc.nodes[li].id}

	killedAt := time.Now()
	lc.kill(li)
	writeAfter, attempts, err := probeWrites(ctx, lc, hc, survivors, killedAt, fmt.Sprintf("failover/%d", k))
	run.WriteAfter, run.Attempts = writeAfter, attempts
	if err != nil {
		return run, err
	}
	if ni, _ := lc.leader(ctx); ni >= 0 {
		run.NewLeader = lc.nodes[ni].id
	}

	if err := sleepOrDone(ctx, restartDelay); err != nil {
		return run, err
	}
	restartedAt := time.Now()
	if err := lc.start(li); err != nil {
		return run, err
	}
	for lc.waitCaughtUp(ctx, li, catchUpBound) != nil {
		// A node that does not catch up is a finding, reported as such;
		// a second kill and restart lets the remaining runs go on.
		if err := ctx.Err(); err != nil || run.Restarts >= maxRestarts {
			return run, fmt.Errorf("%s did not catch up within %v after %d restarts (logs in %s)", lc.nodes[li].id, catchUpBound, run.Restarts+1, lc.dir)
		}
		run.Restarts++
		lc.kill(li)
		if err := sleepOrDone(ctx, time.Second); err != nil {
			return run, err
		}
		if err := lc.start(li); err != nil {
			return run, err
		}
	}
	run.CatchUp = time.Since(restartedAt)
	return run, nil
}

// probeWrites starts a write every failoverProbeEvery, round robin over
// survivors, until one is acknowledged; it returns the time from killedAt
// to that acknowledgement and the writes tried.
func probeWrites(ctx context.Context, lc *benchCluster, hc *http.Client, survivors []int, killedAt time.Time, key string) (time.Duration, int, error) {
	ctx, cancel := context.WithTimeout(ctx, failoverBound)
	defer cancel()
	var (
		wg       sync.WaitGroup
		inFlight atomic.Int64
		doneOnce sync.Once
		ackedAt  time.Time
	)
	acked := make(chan struct{})
	value := []byte(`"failover"`)
	tick := time.NewTicker(failoverProbeEvery)
	defer tick.Stop()
	attempts := 0
loop:
	for {
		if inFlight.Load() < failoverMaxInFlight {
			addr := lc.nodes[survivors[attempts%len(survivors)]].http
			attempts++
			inFlight.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer inFlight.Add(-1)
				pctx, pcancel := context.WithTimeout(ctx, failoverProbeTimeout)
				defer pcancel()
				req, err := http.NewRequestWithContext(pctx, http.MethodPut, "http://"+addr+"/v1/kv/"+key, bytes.NewReader(value))
				if err != nil {
					return
				}
				resp, err := hc.Do(req)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					now := time.Now()
					doneOnce.Do(func() { ackedAt = now; close(acked) })
				}
			}()
		}
		select {
		case <-acked:
			break loop
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
	}
	cancel()
	wg.Wait()
	select {
	case <-acked:
		return ackedAt.Sub(killedAt), attempts, nil
	default:
		return 0, attempts, fmt.Errorf("no write acknowledged within %v", failoverBound)
	}
}
