package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoUsage: a missing, unknown or extra argument is a usage error,
// one line, that starts nothing; help is cobra's, on stdout.
func TestDemoUsage(t *testing.T) {
	for _, c := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"demo"}, "consensus: demo: which demo? 2node, 3node, failover or workflow"},
		{[]string{"demo", "4node"}, `consensus: demo: unknown demo "4node": want 2node, 3node, failover or workflow`},
		{[]string{"demo", "2node", "extra"}, `consensus: demo: unexpected argument "extra"`},
		{[]string{"demo", "--bogus"}, "consensus: demo: unknown flag: --bogus"},
		{[]string{"demo", "2node", "-keep"}, "consensus: demo: unknown shorthand flag: 'k' in -keep"},
		{[]string{"demo", "2node", "--log-level", "loud"}, "consensus: demo: "},
		{[]string{"demo", "2node", "--endpoints", "127.0.0.1:1"}, "consensus: demo: --endpoints: not a flag of this command"},
		{[]string{"demo-worker", "w1", "pipeline"}, "consensus: demo-worker: want NAME QUEUE ENDPOINTS, got 2 arguments"},
	} {
		r := runCLI(context.Background(), "", c.args...)
		checkOneLine(t, c.args, r)
		if r.code != exitUsage || !strings.HasPrefix(r.stderr, c.stderr) || r.stdout != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and %q", c.args, r.code, r.stdout, r.stderr, c.stderr)
		}
	}
	for _, help := range [][]string{{"demo", "--help"}, {"help", "demo"}} {
		r := runCLI(context.Background(), "", help...)
		if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "consensus demo 2node|3node|failover|workflow [flags]") ||
			!strings.Contains(r.stdout, "--keep") || strings.Contains(r.stdout, "--endpoints") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", help, r.code, r.stdout, r.stderr)
		}
	}
}

// TestDemos runs each demo against the built binary to completion and
// checks its narration, and that it leaves no process or directory.
func TestDemos(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	cases := []struct {
		name  string
		lines []string // regular expressions, each must match a line
		check func(t *testing.T, out string)
	}{
		{"2node", []string{
			`n1 alone has no leader after 1s \(term \d+\): one vote of two is not a majority`,
			`leader elected: n[12] in term \d+, \S+ after n2 started`,
			`started workflow data-pipeline through n[12] \(the leader\): revision 1$`,
			`workflow state read back from n[12] \(a follower, linearizable read\): "Data Processing" is running, step queued, progress 0, revision 1$`,
			`updated it through n[12] \(a follower, which forwards it to n[12]\): step extract, progress 0.25: revision 2$`,
			`the watch on n[12] saw put workflow:data-pipeline at revision 5 \(status running, progress 1\)$`,
			`the watch on n[12] saw put workflow:data-pipeline at revision 6 \(status stopped, progress 1\)$`,
			`n1 holds workflow:data-pipeline locally: status stopped, result completed, progress 1, revision 6, version 6$`,
			`n2 holds workflow:data-pipeline locally: status stopped, result completed, progress 1, revision 6, version 6$`,
			`demo complete`,
		}, nil},
		{"3node", []string{
			`leader elected: n[123] in term \d+`,
			`workflow state read back from n[123] \(a follower, linearizable read\): "Data Processing" is running`,
			`updated it through n[123] \(a follower, which forwards it to n[123]\)`,
			`updated it through n[123] \(the leader\)`,
			`the watch on n[123] saw put workflow:data-pipeline at revision 6 \(status stopped, progress 1\)$`,
			`n3 holds workflow:data-pipeline locally: status stopped, result completed, progress 1, revision 6`,
			`stopping n[123] \(a follower\); 2 of 3 nodes are still a quorum`,
			`wrote 20 keys tasks/00..tasks/19 through n[123] while n[123] was down: revisions 7 to 26$`,
			`n[123] restarted and caught up in \S+: applied index \d+, following n[123]`,
			`n[123] holds all 20 keys written while it was down`,
			`demo complete`,
		}, nil},
		{"failover", []string{
			`leader elected: n[123] in term \d+`,
			`kill -9 n[123] \(pid \d+\), the leader in term \d+`,
			`the cluster was without a leader for \S+: n[123] (became the leader|follows n[123]) in term \d+`,
			`first write acknowledged \S+ after the kill`,
			`n[123] restarted on its data directory and caught up in`,
			`n[123] \(the node that was killed\): all \d+ acknowledged writes present`,
			`summary: \d+ acknowledged writes, none lost`,
			`demo complete`,
		}, checkFailoverNumbers},
		{"workflow", []string{
			`leader elected: n[123] in term \d+`,
			`started worker w4 \(pid \d+\)`,
			`step 1 of 4: enqueued order-7/extract \(workflow order-7\) at revision \d+$`,
			`^\[.*\]   w[1-4] claimed order-7/transform with epoch \d+$`,
			`kill -9 w[1-4] \(pid \d+\) mid-step`,
			`taken over by w[1-4] with epoch \d+ \(> \d+\), \S+ after the kill \(time to live 2s\)$`,
			`SIGSTOP w[1-4] \(pid \d+\) mid-step`,
			`taken over by w[1-4] with epoch \d+ \(> \d+\) once the paused worker's lease ran out$`,
			`SIGCONT w[1-4]: it wakes up late`,
			`w[1-4]'s late complete with epoch \d+ was refused: stale_epoch \(the task was done with epoch \d+\)$`,
			`order-7/load +done once: epoch \d+, attempt 1, completed by w[1-4]$`,
			`summary: each step done exactly once \(4 steps, 4 completes accepted\)`,
			`demo complete`,
		}, checkWorkflowDemo},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			var stdout, stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, bin, "demo", tc.name)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("demo %s: %v\nstdout:\n%s\nstderr:\n%s", tc.name, err, stdout.String(), stderr.String())
			}
			out := stdout.String()
			for _, l := range tc.lines {
				if !regexp.MustCompile(`(?m)` + l).MatchString(out) {
					t.Errorf("no line matches %q", l)
				}
			}
			if tc.check != nil {
				tc.check(t, out)
			}
			// Every node stopped, the directory removed.
			for _, m := range regexp.MustCompile(`\(pid (\d+)\)`).FindAllStringSubmatch(out, -1) {
				pid, _ := strconv.Atoi(m[1])
				if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
					t.Errorf("node process %d still there after the demo: %v", pid, err)
				}
			}
			dir := regexp.MustCompile(`data and logs in (\S+)`).FindStringSubmatch(out)
			if dir == nil {
				t.Fatalf("no data directory named")
			}
			if _, err := os.Stat(dir[1]); !os.IsNotExist(err) {
				t.Errorf("%s still there: %v", dir[1], err)
				_ = os.RemoveAll(dir[1])
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

// checkFailoverNumbers: the measured times are positive durations, and
// every node holds the same, non-zero number of acknowledged writes.
func checkFailoverNumbers(t *testing.T, out string) {
	for _, re := range []string{`without a leader for (\S+):`, `first write acknowledged (\S+) after the kill`} {
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			t.Errorf("no %q", re)
			continue
		}
		if d, err := time.ParseDuration(m[1]); err != nil || d <= 0 {
			t.Errorf("%q: %q is not a positive duration", re, m[1])
		}
	}
	counts := regexp.MustCompile(`(?m)^\[.*\]\s+n[123].*: all (\d+) acknowledged writes present`).FindAllStringSubmatch(out, -1)
	if len(counts) != 3 {
		t.Fatalf("%d nodes checked, want 3", len(counts))
	}
	for _, c := range counts {
		if c[1] != counts[0][1] || c[1] == "0" {
			t.Errorf("nodes hold %s and %s acknowledged writes", c[1], counts[0][1])
		}
	}
	if !strings.Contains(out, "summary: "+counts[0][1]+" acknowledged writes, none lost") {
		t.Errorf("summary does not say %s writes", counts[0][1])
	}
}

// checkWorkflowDemo: the killed and the paused worker are the ones that
// claimed the step; each takeover's epoch is above the lost claim's; the
// refused epoch is the paused worker's; the takeover time is positive;
// the killed worker completed nothing after its kill.
func checkWorkflowDemo(t *testing.T, out string) {
	for _, c := range []struct{ step, signal string }{{"transform", "kill -9"}, {"validate", "SIGSTOP"}} {
		re := regexp.MustCompile(`(?m)^\[.*\]   (w\d) claimed order-7/` + c.step + ` with epoch (\d+)\n.*` + c.signal +
			` (w\d) \(pid \d+\) mid-step.*\n(?:.*\n)*?.*taken over by (w\d) with epoch (\d+) \(> (\d+)\)`)
		m := re.FindStringSubmatch(out)
		if m == nil {
			t.Errorf("%s: no claim, %s and takeover in order", c.step, c.signal)
			continue
		}
		lost, _ := strconv.Atoi(m[2])
		next, _ := strconv.Atoi(m[5])
		if m[1] != m[3] || m[4] == m[1] || m[6] != m[2] || next <= lost {
			t.Errorf("%s: %s claimed with epoch %s, %s got %s, %s took over with %s (> %s)", c.step, m[1], m[2], c.signal, m[3], m[4], m[5], m[6])
		}
		if c.step == "validate" {
			late := regexp.MustCompile(`(w\d)'s late complete with epoch (\d+) was refused: stale_epoch \(the task was done with epoch (\d+)\)`).FindStringSubmatch(out)
			if late == nil || late[1] != m[1] || late[2] != m[2] || late[3] != m[5] {
				t.Errorf("late complete %q, want %s's epoch %s refused, done with %s", late, m[1], m[2], m[5])
			}
		}
		if c.step == "transform" {
			if regexp.MustCompile(`(?m)` + m[1] + ` (claimed|completed) order-7/(validate|load)`).MatchString(out) {
				t.Errorf("%s worked after it was killed", m[1])
			}
		}
	}
	m := regexp.MustCompile(`, (\S+) after the kill \(time to live`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("no takeover time")
	}
	if d, err := time.ParseDuration(m[1]); err != nil || d <= 0 {
		t.Errorf("takeover time %q is not a positive duration", m[1])
	}
}
