package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/internal/testwait"
)

// The schedule routes on a three-node cluster, asked of a follower (its
// writes forwarded to the leader): put, get with the next and last tick,
// the ticks enqueued into the queue, list, an equal put changing
// nothing, delete, and bad input refused with 400 and a clear message.
func TestSchedulesOverHTTP(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	follower := c.forwardingFollower(leader)
	base := "http://" + c.https[follower] + "/v1/schedules"
	expect := func(r apiResponse, status int, code, msg string) {
		t.Helper()
		if r.status != status || (code != "" && leaseErrCode(t, r) != code) || !strings.Contains(string(r.body), msg) {
			t.Fatalf("got %d %s, want %d %s mentioning %q", r.status, r.body, status, code, msg)
		}
	}
	put := func(id, body string) apiResponse { return call(t, http.MethodPut, base+"/"+id, []byte(body)) }

	start := time.Now().UnixMilli()
	r := put("every", `{"everyMs":1000,"queue":"ticks","data":{"n":1}}`)
	expect(r, http.StatusOK, "", "")
	created := decodeAs[api.SchedulePut](t, r)
	if created.ID != "every" || created.Revision < 1 {
		t.Fatalf("put answered %s", r.body)
	}
	if again := decodeAs[api.SchedulePut](t, put("every", `{"everyMs":1000,"queue":"ticks","data":{"n":1}}`)); again != created {
		t.Fatalf("an equal put answered %+v, want %+v", again, created)
	}
	expect(put("cron", `{"cron":"*/2 * * * * *","queue":"ticks","data":"c"}`), http.StatusOK, "", "")

	var info api.ScheduleInfo
	testwait.For(t, 10*time.Second, "a tick of the schedule", func() bool {
		r := call(t, http.MethodGet, base+"/every", nil)
		if r.status != http.StatusOK {
			t.Fatalf("get: %d %s", r.status, r.body)
		}
		info = decodeAs[api.ScheduleInfo](t, r)
		return info.LastTickMs > 0
	})
	if info.EveryMs != 1000 || info.Queue != "ticks" || string(info.Data) != `{"n":1}` || info.Fired < 1 ||
		info.NextTickMs != info.LastTickMs+1000 || info.LastTickMs <= start-1000 || info.LastTick == "" || info.NextTick == "" ||
		info.Revision != created.Revision {
		t.Fatalf("get answered %+v", info)
	}
	task := fmt.Sprintf("sched:every:%d", info.LastTickMs)
	r = call(t, http.MethodGet, "http://"+c.https[follower]+"/v1/queues/ticks/tasks/"+task, nil)
	expect(r, http.StatusOK, "", `"data":{"n":1}`)

	r = call(t, http.MethodGet, base, nil)
	expect(r, http.StatusOK, "", "")
	if list := decodeAs[api.ScheduleList](t, r); len(list.Schedules) != 2 || list.Schedules[0].ID != "cron" || list.Schedules[1].ID != "every" {
		t.Fatalf("list answered %s", r.body)
	}

	for _, tc := range []struct {
		name, id, body string
		status         int
		code, msg      string
	}{
		{"bad cron", "b", `{"cron":"61 * * * *","queue":"q","data":1}`, http.StatusBadRequest, api.CodeBadRequest, "cron"},
		{"cron of 7 fields", "b", `{"cron":"* * * * * * *","queue":"q","data":1}`, http.StatusBadRequest, api.CodeBadRequest, "fields"},
		{"cron and everyMs", "b", `{"cron":"* * * * *","everyMs":1000,"queue":"q","data":1}`, http.StatusBadRequest, api.CodeBadRequest, "not both"},
		{"neither", "b", `{"queue":"q","data":1}`, http.StatusBadRequest, api.CodeBadRequest, "cron expression or everyMs"},
		{"everyMs too small", "b", `{"everyMs":10,"queue":"q","data":1}`, http.StatusBadRequest, api.CodeBadRequest, "everyMs"},
		{"time zone", "b", `{"cron":"CRON_TZ=Asia/Tokyo 0 0 * * *","queue":"q","data":1}`, http.StatusBadRequest, api.CodeBadRequest, "UTC"},
		{"no queue", "b", `{"everyMs":1000,"data":1}`, http.StatusBadRequest, api.CodeInvalidKey, "queue"},
		{"bad queue", "b", `{"everyMs":1000,"queue":"a\u0001b","data":1}`, http.StatusBadRequest, api.CodeInvalidKey, "queue"},
		{"no data", "b", `{"everyMs":1000,"queue":"q"}`, http.StatusBadRequest, api.CodeInvalidJSON, "data"},
		{"unknown field", "b", `{"every":1000,"queue":"q","data":1}`, http.StatusBadRequest, api.CodeInvalidJSON, "every"},
		{"not JSON", "b", `{`, http.StatusBadRequest, api.CodeInvalidJSON, ""},
		{"id too long", strings.Repeat("x", api.MaxScheduleIDBytes+1), `{"everyMs":1000,"queue":"q","data":1}`, http.StatusBadRequest, api.CodeInvalidKey, "schedule"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expect(put(tc.id, tc.body), tc.status, tc.code, tc.msg)
		})
	}
	expect(call(t, http.MethodPost, base+"/every", []byte(`{}`)), http.StatusMethodNotAllowed, "", "")
	expect(call(t, http.MethodGet, base+"/every/x", nil), http.StatusNotFound, api.CodeNotFound, "")
	expect(call(t, http.MethodGet, base+"/b", nil), http.StatusNotFound, api.CodeScheduleNotFound, "")

	expect(call(t, http.MethodDelete, base+"/every", nil), http.StatusOK, "", `"id":"every"`)
	expect(call(t, http.MethodGet, base+"/every", nil), http.StatusNotFound, api.CodeScheduleNotFound, "")
	expect(call(t, http.MethodDelete, base+"/every", nil), http.StatusNotFound, api.CodeScheduleNotFound, "")
	// The tasks it enqueued stay.
	expect(call(t, http.MethodGet, "http://"+c.https[leader]+"/v1/queues/ticks/tasks/"+task, nil), http.StatusOK, "", "")
}

func TestScheduleRouteTemplates(t *testing.T) {
	for path, want := range map[string]string{
		"/v1/schedules":         "/v1/schedules",
		"/v1/schedules/nightly": "/v1/schedules/{id}",
		"/v1/schedules/a/b":     "other",
	} {
		if got := routeOf(path); got != want {
			t.Errorf("routeOf(%q) = %q, want %q", path, got, want)
		}
	}
}

// The schedule operations of /v1/ws on a follower: their JSON arguments
// and answers are the HTTP routes' bodies, errors their codes.
func TestSchedulesOverWS(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	follower := c.forwardingFollower(leader)
	w := dialWS(t, "ws://"+c.https[follower]+wsPath)
	jsonOf := func(r wsTestResponse) []byte { return wsJSON(t, r) }
	var put api.SchedulePut
	if err := json.Unmarshal(jsonOf(w.call(uint64(1), api.OpSchedulePut, "s1", []byte(`{"cron":"0 0 * * *","queue":"q","data":[1]}`))), &put); err != nil || put.ID != "s1" || put.Revision < 1 {
		t.Fatalf("put: %+v %v", put, err)
	}
	var info api.ScheduleInfo
	if err := json.Unmarshal(jsonOf(w.call(uint64(2), api.OpScheduleGet, "s1")), &info); err != nil || info.Cron != "0 0 * * *" ||
		info.NextTickMs%(24*3600*1000) != 0 || info.NextTickMs <= time.Now().UnixMilli() {
		t.Fatalf("get: %+v %v", info, err)
	}
	var list api.ScheduleList
	if err := json.Unmarshal(jsonOf(w.call(uint64(3), api.OpScheduleList)), &list); err != nil || len(list.Schedules) != 1 {
		t.Fatalf("list: %+v %v", list, err)
	}
	if r := w.call(uint64(4), api.OpSchedulePut, "s2", []byte(`{"cron":"nope","queue":"q","data":1}`)); r.ok || r.code != api.CodeBadRequest {
		t.Fatalf("a bad cron: %+v", r)
	}
	if r := w.call(uint64(5), api.OpScheduleDelete, "s1"); !r.ok {
		t.Fatalf("delete: %+v", r)
	}
	if r := w.call(uint64(6), api.OpScheduleGet, "s1"); r.ok || r.code != api.CodeScheduleNotFound {
		t.Fatalf("get of a deleted schedule: %+v", r)
	}
	if r := w.call(uint64(7), api.Op(54)); r.ok || r.code != api.CodeBadRequest {
		t.Fatalf("op 54: %+v", r)
	}
}

// A delayed task is never ready before its runAt by the leader's clock,
// however far ahead the clock of the follower it was asked of runs, and
// a claim waiting for it gets it within one tick (a second) after.
func TestDelayedTaskReadyAtRunAtByTheLeadersClock(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	follower := c.forwardingFollower(leader)
	c.servers[follower].Store().UseClock(func() time.Time { return time.Now().Add(time.Hour) })
	onFollower := "http://" + c.https[follower] + "/v1/queues/delayed"
	if r := call(t, http.MethodPost, onFollower+"/tasks", []byte(`{"id":"d","data":1,"delayMs":1500}`)); r.status != http.StatusOK {
		t.Fatalf("enqueue: %d %s", r.status, r.body)
	}
	r := call(t, http.MethodGet, "http://"+c.https[leader]+"/v1/queues/delayed/tasks/d", nil)
	runAt := decodeAs[api.TaskInfo](t, r).ReadyAtMs
	if now := time.Now().UnixMilli(); runAt < now+1000 || runAt > now+1500 {
		t.Fatalf("runAt %d is not 1.5 s after the leader's clock (%d)", runAt, now)
	}
	// Before runAt: delayed, and a claim gets nothing.
	for time.Now().UnixMilli() < runAt-300 {
		r := call(t, http.MethodPost, onFollower+"/claim", []byte(`{"worker":"w","ttlMs":5000}`))
		if r.status == http.StatusOK && time.Now().UnixMilli() < runAt {
			t.Fatalf("claimed at %d, before runAt %d: %s", time.Now().UnixMilli(), runAt, r.body)
		}
		if r.status != http.StatusNoContent {
			break
		}
		if r := call(t, http.MethodGet, onFollower+"/tasks/d", nil); !strings.Contains(string(r.body), `"state":"delayed"`) && time.Now().UnixMilli() < runAt {
			t.Fatalf("before runAt: %s", r.body)
		}
	}
	r = call(t, http.MethodPost, onFollower+"/claim", []byte(`{"worker":"w","ttlMs":5000,"waitMs":5000}`))
	got := time.Now().UnixMilli()
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"id":"d"`) {
		t.Fatalf("claim: %d %s", r.status, r.body)
	}
	if got < runAt || got > runAt+1000 {
		t.Fatalf("claimed at %d, %d ms after runAt %d; want 0 to 1000", got, got-runAt, runAt)
	}
	t.Logf("claimed %d ms after runAt", got-runAt)
}
