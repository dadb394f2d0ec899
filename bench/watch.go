package bench

import (
	"context"
	"strconv"
	"time"
)

// The watcher figures both systems report (consensus bench --watchers,
// etcd run --watchers): while the workloads run, N watchers follow the
// workloads' prefix and a probe writer puts the time it sends each probe
// (a Prober) under ProbeKey; each watcher notes when each probe reaches it
// (a ProbeSight). Every write of the workloads reaches every watcher, so
// the workload rows carry the cost of the fan-out, and the probes the
// delivery lag.

const (
	// ProbeKey is where the probe writer writes; its value is the probe's
	// Sent offset in nanoseconds, a JSON number.
	ProbeKey = "bench/~probe"
	// ProbeInterval is how often the probe writer writes.
	ProbeInterval = 20 * time.Millisecond
	// MaxWatchers bounds the watchers of a run: our node's default bound
	// on open watches is 8192, so the most needs them spread over at
	// least two nodes.
	MaxWatchers = 16384
)

// WatchReport is the watcher figures of a run, in its JSON report as
// "watch".
type WatchReport struct {
	// Watchers is the number of watches.
	Watchers int `json:"watchers"`
	// SharedIdentity (ours): the watchers could not each take their own
	// loopback source address, so the server counts them as one client.
	SharedIdentity bool `json:"sharedIdentity,omitempty"`
	// Nodes is the number of nodes the watchers were spread over.
	Nodes int `json:"nodes"`
	// Transport (ours) is how the watches were carried: "sse" (a GET
	// /v1/watch stream each) or "ws" (many to a /v1/ws connection); empty
	// in etcd's reports and in ours from before it was recorded.
	Transport string `json:"transport,omitempty"`
	// Streams is the number of connections (ours: SSE streams, one TCP
	// connection each) or gRPC watch streams (etcd: one per client, each
	// carrying many watches) the watches were carried by; 0 in reports
	// from before it was counted.
	Streams int `json:"streams,omitempty"`
	// Probes is the number of probe writes acknowledged; Delivered is the
	// probe events read by all the watchers: Probes*Watchers when every
	// watcher read every probe, more when probes whose writer saw an
	// error (a timeout) were applied all the same.
	Probes    int   `json:"probes"`
	Delivered int64 `json:"delivered"`
	// Lag is the delivery lag from a probe's write being sent to its
	// event being read by a watcher, over every (probe, watcher) pair.
	Lag Latency `json:"lagNs"`
	// AckLag is the delivery lag from the probe write's acknowledgement
	// reaching the writer to its event being read by a watcher, over the
	// same pairs; negative where a watcher saw the event before the
	// writer saw the acknowledgement.
	AckLag Latency `json:"ackLagNs"`
	// ProbeWrite is the latency of the probe writes.
	ProbeWrite Latency `json:"probeWriteNs"`
	// Events is the number of events all the watchers read.
	Events int64 `json:"events"`
	// Ended is the number of watches that ended before the run did.
	Ended int64 `json:"ended"`
}

// ProbeSight is one watcher's reading of one probe: the probe's Sent
// offset (its value) and when the watcher read it, both from the
// Prober's start.
type ProbeSight struct {
	Sent, At time.Duration
}

// ReadProbe is the sight of a probe whose value (its Sent offset, a JSON
// number) a watcher reads now; false when value is not one.
func ReadProbe(value []byte, start time.Time) (ProbeSight, bool) {
	sent, err := strconv.ParseInt(string(value), 10, 64)
	if err != nil {
		return ProbeSight{}, false
	}
	return ProbeSight{Sent: time.Duration(sent), At: time.Since(start)}, true
}

// DeliveryLags returns the lag of each sight from its probe's sending and
// from its probe's acknowledgement (acked maps a probe's Sent offset to
// when its acknowledgement came, from the same start). A sight of a probe
// that was never acknowledged (its answer lost or failed) has only the
// first; unacked counts those.
func DeliveryLags(sights []ProbeSight, acked map[time.Duration]time.Duration) (fromSend, fromAck []time.Duration, unacked int) {
	fromSend = make([]time.Duration, 0, len(sights))
	fromAck = make([]time.Duration, 0, len(sights))
	for _, s := range sights {
		fromSend = append(fromSend, s.At-s.Sent)
		ack, ok := acked[s.Sent]
		if !ok {
			unacked++
			continue
		}
		fromAck = append(fromAck, s.At-ack)
	}
	return fromSend, fromAck, unacked
}

// Prober writes a probe every ProbeInterval until Stop, and one more then.
type Prober struct {
	start time.Time
	put   func(ctx context.Context, sent time.Duration) error
	stop  chan struct{}
	done  chan struct{}

	// Written by the probe goroutine until done is closed.
	acked map[time.Duration]time.Duration
	lat   []time.Duration
	err   error
}

// StartProber starts writing probes with put, which writes sent (the
// time since start) under ProbeKey and returns once the write is
// acknowledged. It runs until Stop or ctx ends.
func StartProber(ctx context.Context, start time.Time, put func(ctx context.Context, sent time.Duration) error) *Prober {
	p := &Prober{start: start, put: put, stop: make(chan struct{}), done: make(chan struct{}),
		acked: make(map[time.Duration]time.Duration)}
	go p.run(ctx)
	return p
}

func (p *Prober) run(ctx context.Context) {
	defer close(p.done)
	tick := time.NewTicker(ProbeInterval)
	defer tick.Stop()
	for final := false; !final; {
		select {
		case <-p.stop:
			// One last probe after the cells' writes: a watcher that has
			// read it has read every write (events come in order).
			final = true
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		sent := time.Since(p.start)
		opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := p.put(opCtx, sent)
		cancel()
		if err != nil {
			p.err = err
			continue
		}
		ack := time.Since(p.start)
		p.acked[sent] = ack
		p.lat = append(p.lat, ack-sent)
	}
}

// Stop writes the last probe and returns when each probe was
// acknowledged (by Sent offset), the probes' write latencies, and the
// last error a probe write had, if any. Call it once.
func (p *Prober) Stop() (acked map[time.Duration]time.Duration, latencies []time.Duration, err error) {
	close(p.stop)
	<-p.done
	return p.acked, p.lat, p.err
}

// WaitDelivered waits, at most timeout, until delivered(i) >= want for
// every i < n: every watcher has read the last probe.
func WaitDelivered(n int, delivered func(i int) int64, want int64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for next := 0; next < n && time.Now().Before(deadline); {
		if delivered(next) >= want {
			next++
			continue
		}
		<-tick.C
	}
}

// Summary fills r's Probes, Delivered, Lag, AckLag and ProbeWrite from
// the sights of every watcher and the prober's figures.
func (r *WatchReport) Summary(sights [][]ProbeSight, acked map[time.Duration]time.Duration, probeLat []time.Duration) {
	var all []ProbeSight
	for _, s := range sights {
		all = append(all, s...)
	}
	fromSend, fromAck, _ := DeliveryLags(all, acked)
	r.Probes = len(acked)
	r.Delivered = int64(len(all))
	r.Lag = Summarise(fromSend)
	r.AckLag = Summarise(fromAck)
	r.ProbeWrite = Summarise(probeLat)
}
