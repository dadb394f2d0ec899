package kv

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/unrdf/consensus/api"
)

// Schedule errors and limits (defined in api).
var (
	// ErrScheduleNotFound means no schedule has this id.
	ErrScheduleNotFound = api.ErrScheduleNotFound
)

const (
	// DefaultMaxSchedules bounds the schedules the state holds.
	DefaultMaxSchedules = 10_000
	// maxScheduleScan bounds the ticks of a cron schedule one fire steps
	// through before it jumps to the newest ones: a catch-up after a long
	// time without a leader costs apply at most a few times this many
	// steps of the cron parser's Next.
	maxScheduleScan = 10_000
)

// WithMaxSchedules sets the most schedules the state holds (default
// DefaultMaxSchedules); alike on every node.
func WithMaxSchedules(n int) Option { return func(m *Machine) { m.maxSchedules = n } }

// schedule is one schedule: it enqueues a task into queue at each tick
// of its cron expression or of its fixed interval. Its strings and data
// are never changed in place (a snapshot's clone shares them).
type schedule struct {
	id, queue string
	cron      string
	everyMs   int64
	data      []byte
	// created is the log index of the put that made it as it is.
	created uint64
	// after is where its ticks resume: the last tick fired, or the clock
	// when it was put; ticks later than after are due once the clock
	// reaches them.
	after int64
	// lastFired is the last tick it fired (0: none); fired and skipped
	// count ticks enqueued and ticks not enqueued (beyond the catch-up
	// limit, or refused by a full state).
	lastFired      int64
	fired, skipped int64
	// spec is cron parsed and next the first tick after after (0: none);
	// both derived from the fields above.
	spec cron.Schedule
	next int64
}

func scheduleLess(a, b schedule) bool { return a.id < b.id }

// cronParser accepts 5 fields, or 6 with seconds first, and descriptors
// (@hourly, ...).
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// parseCron parses a schedule's cron expression, evaluated in UTC. A
// time zone prefix (TZ=, CRON_TZ=) is refused: its meaning would depend
// on each node's time zone database, and the parser panics on some of
// them; @every is refused in favour of everyMs.
func parseCron(expr string) (spec cron.Schedule, err error) {
	switch {
	case expr == "" || len(expr) > api.MaxCronBytes:
		return nil, fmt.Errorf("a cron expression is 1 to %d bytes, not %d", api.MaxCronBytes, len(expr))
	case strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ="):
		return nil, fmt.Errorf("cron %q: a time zone prefix is not accepted: schedules run in UTC", expr)
	case strings.HasPrefix(expr, "@every"):
		return nil, fmt.Errorf("cron %q: use everyMs for a fixed interval", expr)
	}
	defer func() {
		// The parser is input-driven code of another project: a panic
		// there must not take down apply.
		if r := recover(); r != nil {
			spec, err = nil, fmt.Errorf("cron %q: %v", expr, r)
		}
	}()
	spec, err = cronParser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("cron %q: %w", expr, err)
	}
	return spec, nil
}

// checkScheduleSpec checks a schedule's cron expression or interval
// (exactly one of them) and returns the parsed cron expression.
func checkScheduleSpec(expr string, everyMs int64) (cron.Schedule, *applyError) {
	switch {
	case expr != "" && everyMs != 0:
		return nil, fail(ErrBadCommand, "a schedule has a cron expression or everyMs, not both")
	case expr == "" && everyMs == 0:
		return nil, fail(ErrBadCommand, "a schedule needs a cron expression or everyMs")
	case expr == "":
		if everyMs < api.MinScheduleEveryMs || everyMs > api.MaxScheduleEveryMs {
			return nil, fail(ErrBadCommand, "everyMs %d, want %d to %d", everyMs, api.MinScheduleEveryMs, int64(api.MaxScheduleEveryMs))
		}
		return nil, nil
	}
	spec, err := parseCron(expr)
	if err != nil {
		return nil, fail(ErrBadCommand, "%s", err.Error())
	}
	return spec, nil
}

// tickAfter returns s's first tick later than t (Unix ms), or 0 if it
// never ticks again.
func (s *schedule) tickAfter(t int64) int64 {
	if s.spec == nil {
		if t < 0 {
			return 0
		}
		return (t/s.everyMs + 1) * s.everyMs
	}
	n := s.spec.Next(time.UnixMilli(t).UTC())
	if n.IsZero() {
		return 0
	}
	return n.UnixMilli()
}

// ScheduleTaskID is the id of the task schedule id enqueues for its tick
// at tickMs (Unix ms): the same tick always makes the same task, which a
// queue holds once.
func ScheduleTaskID(id string, tickMs int64) string {
	return api.ScheduleTaskPrefix + id + ":" + strconv.FormatInt(tickMs, 10)
}

// dueTicks returns s's ticks after s.after up to now, at most limit of
// them (the newest), and how many older ones it left out.
func (s *schedule) dueTicks(now int64, limit int) (ticks []int64, skipped int64) {
	if s.spec == nil {
		first, last := s.after/s.everyMs+1, now/s.everyMs
		if last < first {
			return nil, 0
		}
		if n := last - first + 1; n > int64(limit) {
			skipped, first = n-int64(limit), last-int64(limit)+1
		}
		for k := first; k <= last; k++ {
			ticks = append(ticks, k*s.everyMs)
		}
		return ticks, skipped
	}
	// A cron schedule is stepped through, keeping the newest limit ticks;
	// a long stretch jumps ahead to the span before now that the last
	// maxScheduleScan steps covered, so a catch-up after days stays cheap
	// (the ticks jumped over are not counted).
	var scanned int
	from := s.after
	for t := s.tickAfter(s.after); t != 0 && t <= now; t = s.tickAfter(t) {
		if len(ticks) == limit {
			ticks = append(ticks[:0], ticks[1:]...)
			skipped++
		}
		ticks = append(ticks, t)
		if scanned++; scanned%maxScheduleScan == 0 {
			if scanned >= 4*maxScheduleScan {
				break // the next fire goes on from here
			}
			if jump := now - (t - from); jump > t {
				t = jump
			}
			from = t
		}
	}
	return ticks, skipped
}

// applySchedulePut creates or replaces schedule c.Key: it enqueues c.Value
// into queue c.Queue at each tick of cron c.Cron or every c.Every ms,
// from the clock on. A put equal to the schedule changes nothing.
func (m *Machine) applySchedulePut(c *command) (int64, *applyError) {
	now := m.tick(c.At)
	if err := checkName("schedule id", c.Key, api.MaxScheduleIDBytes); err != nil {
		return 0, err
	}
	if err := checkName("queue name", c.Queue, api.MaxQueueNameBytes); err != nil {
		return 0, err
	}
	spec, err := checkScheduleSpec(c.Cron, c.Every)
	if err != nil {
		return 0, err
	}
	if err := m.checkTaskBytes("data", c.Value); err != nil {
		return 0, err
	}
	prev, had := m.schedules.Get(schedule{id: c.Key})
	if had && prev.queue == c.Queue && prev.cron == c.Cron && prev.everyMs == c.Every && bytes.Equal(prev.data, c.Value) {
		return int64(prev.created), nil
	}
	if !had && m.schedules.Len() >= m.maxSchedules {
		return 0, fail(ErrStateFull, "put schedule %q: the state holds %d schedules, its limit", c.Key, m.schedules.Len())
	}
	s := schedule{id: c.Key, queue: c.Queue, cron: c.Cron, everyMs: c.Every, data: c.Value, created: m.applied,
		after: now, spec: spec}
	if had {
		// The same id keeps its history; ticks go on from now.
		s.lastFired, s.fired, s.skipped = prev.lastFired, prev.fired, prev.skipped
		s.after = max(now, prev.lastFired)
	}
	s.next = s.tickAfter(s.after)
	m.schedules.ReplaceOrInsert(s)
	return int64(m.applied), nil
}

// applyScheduleDelete removes schedule c.Key; the tasks it enqueued stay.
func (m *Machine) applyScheduleDelete(c *command) *applyError {
	m.tick(c.At)
	if err := checkName("schedule id", c.Key, api.MaxScheduleIDBytes); err != nil {
		return err
	}
	if _, ok := m.schedules.Delete(schedule{id: c.Key}); !ok {
		return fail(ErrScheduleNotFound, "delete schedule %q", c.Key)
	}
	return nil
}

// applyScheduleFire fires schedule c.Key, proposed by the leader when its
// clock (c.At) reached the schedule's next tick c.Tick: every tick due by
// the clock is enqueued, at most api.ScheduleCatchUp of them (the newest;
// the others are skipped and counted). A fire whose c.Tick is not the
// schedule's next tick (a repeated proposal, a schedule replaced
// meanwhile) or not due yet changes nothing: ErrConflict.
func (m *Machine) applyScheduleFire(c *command) *applyError {
	now := m.tick(c.At)
	if err := checkName("schedule id", c.Key, api.MaxScheduleIDBytes); err != nil {
		return err
	}
	s, ok := m.schedules.Get(schedule{id: c.Key})
	if !ok {
		return fail(ErrScheduleNotFound, "fire schedule %q", c.Key)
	}
	if s.next == 0 || c.Tick != s.next || s.next > now {
		return fail(ErrConflict, "fire schedule %q at tick %d: its next tick is %d, the clock %d", c.Key, c.Tick, s.next, now)
	}
	ticks, skipped := s.dueTicks(now, api.ScheduleCatchUp)
	for _, t := range ticks {
		enq := command{Op: opTaskEnqueue, Key: s.queue, Task: ScheduleTaskID(s.id, t), Value: s.data, At: now, RunAt: t}
		if _, err := m.applyEnqueue(&enq); err != nil {
			skipped++
			continue
		}
		s.fired++
		s.lastFired = t
	}
	if len(ticks) > 0 {
		s.after = ticks[len(ticks)-1]
	}
	s.skipped += skipped
	s.next = s.tickAfter(s.after)
	m.schedules.ReplaceOrInsert(s)
	return nil
}

// ScheduleInfo describes a schedule (api.ScheduleInfo).
type ScheduleInfo = api.ScheduleInfo

func (s schedule) info() ScheduleInfo {
	info := ScheduleInfo{ID: s.id, Cron: s.cron, EveryMs: s.everyMs, Queue: s.queue, Data: s.data,
		NextTickMs: s.next, LastTickMs: s.lastFired, Fired: s.fired, Skipped: s.skipped, Revision: int64(s.created)}
	if s.next != 0 {
		info.NextTick = time.UnixMilli(s.next).UTC().Format(time.RFC3339Nano)
	}
	if s.lastFired != 0 {
		info.LastTick = time.UnixMilli(s.lastFired).UTC().Format(time.RFC3339Nano)
	}
	return info
}

// Schedule describes schedule id.
func (m *Machine) Schedule(id string) (ScheduleInfo, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.schedules.Get(schedule{id: id})
	if !ok {
		return ScheduleInfo{}, false
	}
	return s.info(), true
}

// Schedules describes every schedule, by id.
func (m *Machine) Schedules() []ScheduleInfo {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]ScheduleInfo, 0, m.schedules.Len())
	m.schedules.Ascend(func(s schedule) bool {
		out = append(out, s.info())
		return true
	})
	return out
}

// FirstSchedules describes the first limit schedules by id, and returns
// how many there are: a bounded read for a dashboard.
func (m *Machine) FirstSchedules(limit int) ([]ScheduleInfo, int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]ScheduleInfo, 0, min(limit, m.schedules.Len()))
	m.schedules.Ascend(func(s schedule) bool {
		if len(out) == limit {
			return false
		}
		out = append(out, s.info())
		return true
	})
	return out, m.schedules.Len()
}

// dueFire is a schedule whose next tick is due.
type dueFire struct {
	id   string
	tick int64
}

// dueSchedules returns the schedules whose next tick is at or before
// now, by id.
func (m *Machine) dueSchedules(now int64) []dueFire {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []dueFire
	m.schedules.Ascend(func(s schedule) bool {
		if s.next != 0 && s.next <= now {
			out = append(out, dueFire{id: s.id, tick: s.next})
		}
		return true
	})
	return out
}
