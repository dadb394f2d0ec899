package main

import (
	"regexp"
	"strings"
	"testing"
)

// scheduleNumbers matches what a schedule command prints that depends on
// the log (revisions) or on the clock (tick times).
var (
	scheduleNumbers = regexp.MustCompile(`"(revision|nextTickMs|lastTickMs)": [0-9]+`)
	scheduleTimes   = regexp.MustCompile(`[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z`)
)

func normSchedule(s string) string {
	s = scheduleNumbers.ReplaceAllStringFunc(s, func(m string) string {
		name, _, _ := strings.Cut(m, ":")
		return name + ": N"
	})
	s = scheduleTimes.ReplaceAllString(s, "<time>")
	return realign(s, func(cells []string) {
		if len(cells) == 2 { // put: ID REVISION
			cells[1] = "N"
		}
	})
}

// TestCLISchedule puts, gets, lists and deletes schedules through the
// schedule commands, with the refusals (a bad cron expression, both or
// neither of --cron and --every exit 2, an unknown schedule 3), against
// testdata/schedule.golden. Revisions and tick times are normalised; the
// cron schedule ticks once a year, the interval one every 30 days, so
// neither fires during the test.
func TestCLISchedule(t *testing.T) {
	tc := startTestCluster(t)
	tr := newTranscript(t, tc)
	step := func(code int, args ...string) cliResult {
		t.Helper()
		tr.norm = normSchedule
		return tr.step(code, "", args...)
	}
	step(exitOK, "schedule", "put", "new-year", "reports", `{"kind":"yearly"}`, "--cron", "0 30 2 1 1 *")
	step(exitOK, "schedule", "put", "new-year", "reports", `{"kind":"yearly"}`, "--cron", "0 30 2 1 1 *", "-o", "json")
	step(exitOK, "schedule", "put", "monthly", "bills", `"run"`, "--every", "720h")
	step(exitUsage, "schedule", "put", "bad", "q", "1")
	step(exitUsage, "schedule", "put", "bad", "q", "1", "--cron", "* * * * *", "--every", "1s")
	step(exitUsage, "schedule", "put", "bad", "q", "1", "--every", "10ms")
	step(exitUsage, "schedule", "put", "bad", "q", "1", "--cron", "61 * * * *")
	step(exitUsage, "schedule", "put", "bad", "q", "1", "--cron", "* * *")
	step(exitUsage, "schedule", "put", "bad", "q", "not-json", "--every", "1s")
	step(exitUsage, "schedule", "put", "bad", "a\x01b", "1", "--every", "1s")
	step(exitOK, "schedule", "get", "new-year")
	step(exitOK, "schedule", "get", "new-year", "-o", "json")
	step(exitNotFound, "schedule", "get", "nope")
	step(exitOK, "schedule", "list")
	step(exitOK, "schedule", "list", "-o", "json")
	step(exitOK, "schedule", "delete", "monthly")
	step(exitNotFound, "schedule", "delete", "monthly")
	step(exitOK, "schedule", "ls")
	tr.check("schedule")
}
