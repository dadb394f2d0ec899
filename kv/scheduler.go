package kv

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// SchedulerConfig tunes a Scheduler. Zero fields take the defaults.
type SchedulerConfig struct {
	// Tick is how often the leader looks for due schedules (default
	// 100ms): a tick is enqueued up to this long, plus a commit, after
	// its time.
	Tick time.Duration
	// MaxInFlight bounds the fires proposed at once (default 64).
	MaxInFlight int
	// Logger receives the scheduler's logs; nil discards them.
	Logger *slog.Logger
	// Now is the wall clock that decides when ticks are due; default
	// time.Now.
	Now func() time.Time
}

func (c *SchedulerConfig) setDefaults() {
	if c.Tick <= 0 {
		c.Tick = 100 * time.Millisecond
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 64
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Scheduler is the leader's schedule clock. Schedules and the last tick
// each fired are replicated state (Machine); when a tick is due is
// decided by the leader alone, by its wall clock: when a schedule's next
// tick has come, it proposes "fire schedule X at tick T" through the log,
// bound to its term (consensus.InTerm), and apply enqueues the tick's
// task, whose id the schedule and the tick make. A fire for a tick the
// schedule is past changes nothing, so neither a repeated proposal nor a
// new leader fires a tick twice. A new leader first reads the state in
// its term (a linearizable read), then fires whatever is due, missed
// ticks included (at most api.ScheduleCatchUp of them per schedule).
// Every node runs a Scheduler; it is idle unless its node leads.
type Scheduler struct {
	node    LeaderNode
	machine *Machine
	cfg     SchedulerConfig

	mu sync.Mutex
	// term is the term whose state the scheduler read (ready); inFlight
	// the schedules whose fire is being proposed.
	term     uint64
	ready    bool
	inFlight map[string]struct{}

	// proposed and refused count fires proposed and those not applied.
	proposed, refused atomic.Uint64

	// ctx ends with Stop: it bounds every read and proposal.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup
}

// SchedulerStats counts a scheduler's work.
type SchedulerStats struct {
	// FiresProposed counts fire proposals; FiresNotApplied those refused
	// or lost (a term that ended, a schedule replaced, a timeout).
	FiresProposed, FiresNotApplied uint64
}

// Stats returns the scheduler's counters.
func (s *Scheduler) Stats() SchedulerStats {
	return SchedulerStats{FiresProposed: s.proposed.Load(), FiresNotApplied: s.refused.Load()}
}

// NewScheduler returns the schedule clock of node, whose state machine
// is machine. Start runs it.
func NewScheduler(node LeaderNode, machine *Machine, cfg SchedulerConfig) *Scheduler {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Scheduler{node: node, machine: machine, cfg: cfg, inFlight: make(map[string]struct{}),
		ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// Start runs the scheduler until Stop.
func (s *Scheduler) Start() { go s.run() }

// Stop stops the scheduler and waits for it and its proposals (whose
// outcome it no longer waits for).
func (s *Scheduler) Stop() {
	s.cancel()
	<-s.done
	s.wg.Wait()
}

func (s *Scheduler) run() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.tick()
		case <-s.ctx.Done():
			return
		}
	}
}

func (s *Scheduler) tick() {
	term, leading := s.node.Leading()
	s.mu.Lock()
	if !leading || s.term != term {
		s.ready, s.term = false, term
	}
	ready := s.ready
	s.mu.Unlock()
	if !leading {
		return
	}
	if !ready {
		// The state as of this term, so that every fire of the previous
		// leader is seen before anything is found due.
		ctx, cancel := context.WithTimeout(s.ctx, 10*s.cfg.Tick)
		err := s.node.LinearizableRead(ctx)
		cancel()
		if err != nil {
			s.cfg.Logger.Debug("schedule clock: reading the state failed; trying again", "err", err)
			return
		}
		s.mu.Lock()
		if s.term == term {
			s.ready = true
			s.cfg.Logger.Info("schedule clock ready", "term", term)
		}
		s.mu.Unlock()
		return
	}
	now := s.cfg.Now().UnixMilli()
	for _, due := range s.machine.dueSchedules(now) {
		s.mu.Lock()
		_, busy := s.inFlight[due.id]
		full := len(s.inFlight) >= s.cfg.MaxInFlight
		if !busy && !full {
			s.inFlight[due.id] = struct{}{}
		}
		s.mu.Unlock()
		if full {
			return
		}
		if busy {
			continue
		}
		s.wg.Add(1)
		go s.fire(term, due, now)
	}
}

// fire proposes the fire of due, bound to term.
func (s *Scheduler) fire(term uint64, due dueFire, now int64) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.inFlight, due.id)
		s.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(s.ctx, 50*s.cfg.Tick)
	defer cancel()
	s.proposed.Add(1)
	cmd, err := encodeCommand(command{Op: opScheduleFire, Key: due.id, Tick: due.tick, At: now})
	if err == nil {
		var res any
		res, err = s.node.ProposeInTerm(ctx, cmd, term)
		if r, ok := res.(Result); ok && err == nil {
			err = r.Err
		}
	}
	if err != nil {
		s.refused.Add(1)
		if !errors.Is(err, ErrConflict) {
			s.cfg.Logger.Debug("schedule fire not applied", "schedule", due.id, "tick", due.tick, "term", term, "err", err)
		}
	}
}
