package client

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/unrdf/consensus/api"
)

// CodeScheduleNotFound is the code of a get or delete of a schedule that
// does not exist (api's).
const CodeScheduleNotFound = api.CodeScheduleNotFound

// ErrScheduleNotFound means no schedule has this id (api's), matched with
// errors.Is.
var ErrScheduleNotFound = api.ErrScheduleNotFound

// scheduleCall runs a schedule operation (/v1/ws 50 to 53) with body
// (marshalled to JSON unless nil) and unmarshals its JSON answer into out.
// Puts and deletes carry a request id, so a retry is applied once.
func (c *Client) scheduleCall(ctx context.Context, r *api.Request, body, out any) error {
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("client: %s: %w", r.Op, err)
		}
		r.Value = b
	}
	var resp response
	var err error
	if r.Op.IsWrite() {
		resp, err = c.doWrite(ctx, r)
	} else {
		resp, err = c.doRequest(ctx, r)
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(resp.json, out); err != nil {
		return fmt.Errorf("client: %s: decoding the answer: %w", r.Op, err)
	}
	return nil
}

// PutSchedule creates or replaces schedule id: the cluster enqueues a
// task with req.Data into req.Queue at each tick of req.Cron (5 fields, or
// 6 with seconds; UTC) or of req.EveryMs, with the id
// "sched:<id>:<tick in Unix ms>", once per tick. Exactly one of Cron and
// EveryMs; a bad cron expression is an error wrapping api.ErrBadRequest
// that says why.
func (c *Client) PutSchedule(ctx context.Context, id string, req api.ScheduleRequest) (api.SchedulePut, error) {
	var out api.SchedulePut
	err := c.scheduleCall(ctx, &api.Request{Op: api.OpSchedulePut, Key: id}, req, &out)
	return out, err
}

// Schedule describes schedule id, with its next tick and its last fired
// tick; an error wrapping ErrScheduleNotFound if there is none.
func (c *Client) Schedule(ctx context.Context, id string) (api.ScheduleInfo, error) {
	var out api.ScheduleInfo
	err := c.scheduleCall(ctx, &api.Request{Op: api.OpScheduleGet, Key: id}, nil, &out)
	return out, err
}

// Schedules describes every schedule, by id.
func (c *Client) Schedules(ctx context.Context) ([]api.ScheduleInfo, error) {
	var out api.ScheduleList
	err := c.scheduleCall(ctx, &api.Request{Op: api.OpScheduleList}, nil, &out)
	return out.Schedules, err
}

// DeleteSchedule removes schedule id (the tasks it enqueued stay); an
// error wrapping ErrScheduleNotFound if there is none.
func (c *Client) DeleteSchedule(ctx context.Context, id string) (api.SchedulePut, error) {
	var out api.SchedulePut
	err := c.scheduleCall(ctx, &api.Request{Op: api.OpScheduleDelete, Key: id}, nil, &out)
	return out, err
}
