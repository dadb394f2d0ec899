package kv

import (
	"context"
	"fmt"

	"github.com/unrdf/consensus/api"
)

// ScheduleRequest is what PutSchedule puts (api.ScheduleRequest).
type ScheduleRequest = api.ScheduleRequest

// CheckSchedule checks a schedule's id and definition as PutSchedule
// does, before anything is proposed: a bad cron expression, both or
// neither of cron and everyMs, a bad queue name or data fail with
// ErrBadCommand, ErrInvalidKey, ErrInvalidValue or ErrValueTooLarge.
func (s *Store) CheckSchedule(id string, req ScheduleRequest) error {
	if err := checkRequestName("schedule id", id, api.MaxScheduleIDBytes); err != nil {
		return err
	}
	if err := checkRequestName("queue name", req.Queue, api.MaxQueueNameBytes); err != nil {
		return err
	}
	spec, err := checkScheduleSpec(req.Cron, req.EveryMs)
	if err != nil {
		return err
	}
	if spec != nil {
		sc := schedule{spec: spec}
		if sc.tickAfter(s.now().UnixMilli()) == 0 {
			return fail(ErrBadCommand, "cron %q never fires", req.Cron)
		}
	}
	if len(req.Data) == 0 {
		return fail(ErrInvalidValue, "a schedule's data is required: each task's payload, any JSON value")
	}
	if err := s.machine.checkTaskBytes("data", req.Data); err != nil {
		return err
	}
	return nil
}

// PutSchedule creates or replaces schedule id: from now on it enqueues a
// task with req.Data into req.Queue at each tick of req.Cron (UTC) or of
// req.EveryMs, with the id ScheduleTaskID(id, tick), so that each tick
// is enqueued once whatever happens to the leader. It returns the log
// index of the put (the existing schedule's, for a put equal to it,
// which changes nothing).
func (s *Store) PutSchedule(ctx context.Context, id string, req ScheduleRequest) (int64, error) {
	if err := s.CheckSchedule(id, req); err != nil {
		return 0, err
	}
	return s.write(ctx, command{Op: opSchedulePut, Key: id, Queue: req.Queue, Cron: req.Cron, Every: req.EveryMs,
		Value: req.Data, At: s.now().UnixMilli()})
}

// DeleteSchedule removes schedule id (the tasks it enqueued stay);
// ErrScheduleNotFound if there is none.
func (s *Store) DeleteSchedule(ctx context.Context, id string) (int64, error) {
	if err := checkRequestName("schedule id", id, api.MaxScheduleIDBytes); err != nil {
		return 0, err
	}
	return s.write(ctx, command{Op: opScheduleDelete, Key: id, At: s.now().UnixMilli()})
}

// Schedule describes schedule id; ErrScheduleNotFound if there is none.
func (s *Store) Schedule(ctx context.Context, id string, c Consistency) (ScheduleInfo, error) {
	if err := checkRequestName("schedule id", id, api.MaxScheduleIDBytes); err != nil {
		return ScheduleInfo{}, err
	}
	if err := s.sync(ctx, c); err != nil {
		return ScheduleInfo{}, err
	}
	info, ok := s.machine.Schedule(id)
	if !ok {
		return ScheduleInfo{}, fmt.Errorf("kv: schedule %q: %w", id, ErrScheduleNotFound)
	}
	return info, nil
}

// Schedules describes every schedule, by id.
func (s *Store) Schedules(ctx context.Context, c Consistency) ([]ScheduleInfo, error) {
	if err := s.sync(ctx, c); err != nil {
		return nil, err
	}
	return s.machine.Schedules(), nil
}
