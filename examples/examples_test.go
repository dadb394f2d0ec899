// Package examples holds runnable programs that use the Go client (one
// per directory) and this test, which builds each and runs it against a
// 3-node cluster in the test process.
package examples

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/unrdf/consensus/internal/loopback"
	"github.com/unrdf/consensus/internal/testcluster"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// examples are the programs under test and the lines (regular
// expressions) each must print.
var examples = []struct {
	name  string
	lines []string
}{
	{"basic-kv", []string{
		`^connected to n[123]; the leader is n[123] \(term \d+\)$`,
		`^put examples/basic-kv/[0-9a-f]{8}/greeting = \{"text":"hello"\} at revision \d+$`,
		`^get examples/basic-kv/[0-9a-f]{8}/greeting: \{"text":"hello"\} \(revision \d+, version 1\)$`,
		`^conditional put at revision \d+ succeeded: now revision \d+$`,
		`^conditional put on stale revision \d+ refused: .*precondition failed`,
		`^create-only put of an existing key refused`,
		`^listed 3 keys under examples/basic-kv/[0-9a-f]{8}/colors/ at revision \d+:$`,
		`^  examples/basic-kv/[0-9a-f]{8}/colors/blue = "blue" \(revision \d+\)$`,
		`^deleted examples/basic-kv/[0-9a-f]{8}/greeting at revision \d+; a get now answers: key not found$`,
		`^cleaned up; done$`,
	}},
	{"data-pipeline", []string{
		`^started workflow data-pipeline-[0-9a-f]{8} at revision \d+$`,
		`^starting it again while it runs is refused: invalid transition$`,
		`^step extract   progress 0.25  status running  revision \d+$`,
		`^step load      progress 1.00  status running  revision \d+$`,
		`^stopped workflow data-pipeline-[0-9a-f]{8} at revision \d+$`,
		`^updating a stopped workflow is refused: invalid transition$`,
		`^workflow view and key workflow:data-pipeline-[0-9a-f]{8} agree at revision \d+ \(version 6\): \{.*"result":"completed".*"status":"stopped"`,
		`^listed among the cluster's \d+ workflows$`,
		`^cleaned up; done$`,
	}},
	{"batch", []string{
		`^opened alice \(100\) and bob \(50\) in one batch at revision \d+$`,
		`^both keys carry the batch's revision \d+$`,
		`^transferred 30 from alice to bob with ledger entry 1, all at revision \d+$`,
		`^a second transfer on the stale revisions was refused: .*precondition failed`,
		`^all or nothing: alice 70 and bob 80 still at revision \d+, no ledger entry 2$`,
		`^retried on fresh revisions: alice 40, bob 110 at revision \d+$`,
		`^deleted the 4 keys in one batch; done$`,
	}},
	{"watch", []string{
		`^watching examples/watch/[0-9a-f]{8}/ from revision \d+$`,
		`^  revision \d+: put examples/watch/[0-9a-f]{8}/job/0 = \{"run":0\}$`,
		`^stopped watching after 5 changes, the last at revision \d+$`,
		`^the writer made 12 changes, revisions \d+ to \d+$`,
		`^resumed from revision \d+$`,
		`^  revision \d+: delete examples/watch/[0-9a-f]{8}/job/1$`,
		`^saw all 12 changes, in revision order, none missed or repeated$`,
		`^cleaned up; done$`,
	}},
	{"registry", []string{
		`^federation fed-[0-9a-f]{8}: stores under store:fed-[0-9a-f]{8}/<id>$`,
		`^registered store-3 \(http://store3:3000\) at revision \d+$`,
		`^a second registration of store-1 was refused: already registered$`,
		`^3 stores registered at revision \d+:$`,
		`^  store-1  http://store1:3000   beats 15, last at `,
		`^15 concurrent heartbeats on store-1, none lost`,
		`^deregistered store-2; registered now: store-1, store-3$`,
		`^deregistered the rest; done$`,
	}},
	{"locks", []string{
		`^worker a holds lease [0-9a-f]+, worker b lease [0-9a-f]+ \(time to live 3s, kept alive in the background\)$`,
		`^worker a holds examples/locks/[0-9a-f]{8}/report with fencing token \d+$`,
		`^worker b tried the lock once: locked$`,
		`^worker a's lease is gone; worker b now holds the lock with token \d+ \(> \d+\)$`,
		`^worker a's late write with token \d+ was refused: fenced$`,
		`^examples/locks/[0-9a-f]{8}/report-data = \{"by":"b","part":2\}: only the holder's writes$`,
		`^observer: the leader is \{"host":"b"\} \(token \d+\)$`,
		`^worker b resigned$`,
		`^observer: the leader is \{"host":"a"\} \(token \d+\)$`,
		`^cleaned up; done$`,
	}},
	{"worker", []string{
		`^enqueued photo-1 on examples-worker-[0-9a-f]{8} at revision \d+$`,
		`^enqueued photo-1 again: the same task \(revision \d+\), no second one$`,
		`^claimed photo-1 \(attempt 1\): \{"photo":"photo-1","width":640\}$`,
		`^completed photo-1 \(attempt 1, epoch \d+\)$`,
		`^failed photo-2 \(attempt 1, epoch \d+\): it will be retried$`,
		`^completed photo-2 \(attempt 2, epoch \d+\)$`,
		`^the lease [0-9a-f]+ of photo-3's claim is gone \(revoked here; a dead worker's expires\)$`,
		`^the handler's context was cancelled: the claim was lost$`,
		`^gave up photo-3 \(attempt 1, epoch \d+\): the claim was lost, nothing completed$`,
		`^completed photo-3 \(attempt 2, epoch \d+\)$`,
		`^all 3 tasks done$`,
		`^a late complete of photo-3 with the lost epoch \d+ was refused: stale_epoch \(epoch \d+ completed it\)$`,
		`^  photo-2  done  attempts 2  epoch \d+  result \{"photo":"photo-2","resized":"640w"\}$`,
		`^queue stats: ready 0, delayed 0, claimed 0, done 3, dead 0; done$`,
	}},
}

// TestExamples builds every example and runs it against a 3-node
// cluster: each must exit 0 and print its lines. basic-kv runs a second
// time with a dead endpoint first in its list, which the client must
// pass over.
func TestExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the example programs")
	}
	bin := t.TempDir()
	args := []string{"build", "-o", bin + string(filepath.Separator)}
	for _, ex := range examples {
		args = append(args, "./"+ex.name)
	}
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	endpoints := strings.Join(inProcessCluster(t), ",")
	dead, err := loopback.FreeAddr() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}

	type exampleRun struct{ name, example, endpoints string }
	var runs []exampleRun
	for _, ex := range examples {
		runs = append(runs, exampleRun{ex.name, ex.name, endpoints})
	}
	runs = append(runs, exampleRun{"basic-kv-dead-endpoint-first", "basic-kv", dead + "," + endpoints})
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var stdout, stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, filepath.Join(bin, r.example), "--endpoints", r.endpoints)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", r.example, err, stdout.String(), stderr.String())
			}
			for _, ex := range examples {
				if ex.name != r.example {
					continue
				}
				for _, l := range ex.lines {
					if !regexp.MustCompile(`(?m)` + l).MatchString(stdout.String()) {
						t.Errorf("no line matches %q", l)
					}
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", stdout.String())
			}
		})
	}
}

// inProcessCluster starts a 3-node cluster in this process and returns
// its HTTP addresses; the nodes stop when the test ends.
func inProcessCluster(t *testing.T) []string {
	t.Helper()
	return testcluster.Start(t, 3).HTTPAddrs
}
