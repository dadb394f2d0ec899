package client

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
)

// The schedule calls through a follower: put (an equal put changes
// nothing), get with its ticks, the tick's task in the queue, list, a bad
// cron refused with a clear error, delete, and ErrScheduleNotFound.
func TestScheduleCalls(t *testing.T) {
	cl := newTestCluster(t, 3)
	c := followerClient(t, cl)
	ctx := testContext(t)
	req := api.ScheduleRequest{Cron: "* * * * * *", Queue: "ticks", Data: []byte(`{"n":1}`)}
	put, err := c.PutSchedule(ctx, "s", req)
	if err != nil || put.ID != "s" || put.Revision < 1 {
		t.Fatalf("PutSchedule = %+v, %v", put, err)
	}
	if again, err := c.PutSchedule(ctx, "s", req); err != nil || again != put {
		t.Fatalf("an equal PutSchedule = %+v, %v; want %+v", again, err, put)
	}
	var info api.ScheduleInfo
	testwait.For(t, 10*time.Second, "a tick", func() bool {
		info, err = c.Schedule(ctx, "s")
		if err != nil {
			t.Fatal(err)
		}
		return info.LastTickMs > 0
	})
	if info.Cron != req.Cron || info.Queue != "ticks" || info.NextTickMs <= info.LastTickMs || info.Fired < 1 {
		t.Fatalf("Schedule = %+v", info)
	}
	if task, err := c.Queue("ticks").Task(ctx, api.ScheduleTaskPrefix+"s:"+strconv.FormatInt(info.LastTickMs, 10)); err != nil || string(task.Data) != `{"n":1}` {
		t.Fatalf("the tick's task: %+v, %v", task, err)
	}
	list, err := c.Schedules(ctx)
	if err != nil || len(list) != 1 || list[0].ID != "s" {
		t.Fatalf("Schedules = %+v, %v", list, err)
	}
	if _, err := c.PutSchedule(ctx, "bad", api.ScheduleRequest{Cron: "* * *", Queue: "q", Data: []byte(`1`)}); !errors.Is(err, api.ErrBadRequest) ||
		!strings.Contains(err.Error(), "fields") {
		t.Fatalf("a bad cron: %v", err)
	}
	if _, err := c.DeleteSchedule(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Schedule(ctx, "s"); !errors.Is(err, ErrScheduleNotFound) {
		t.Fatalf("Schedule after the delete: %v", err)
	}
	if _, err := c.DeleteSchedule(ctx, "s"); !errors.Is(err, ErrScheduleNotFound) {
		t.Fatalf("a second delete: %v", err)
	}
}
