package main

// etcd scale: what a 3-member etcd costs with N keys, the figures of
// `consensus bench --scale-keys N`; etcd scale-compare: both side by side.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/unrdf/consensus/bench"
)

// scaleWait bounds each wait of a scale run: a snapshot, a restart.
// learnerWait bounds a learner's catch-up: in some runs etcd's learner
// never became ready (its log repeating "failed to publish local member
// to cluster through raft ... too many requests"), and waiting longer
// did not help.
const (
	scaleWait   = 5 * time.Minute
	learnerWait = 2 * time.Minute
)

// scaleFlags is a parsed etcd scale command line.
type scaleFlags struct {
	etcdBin   string
	dir       string
	port      int
	keys      int
	valueSize int
	json      bool
	keepData  bool
}

func parseScaleFlags(args []string, stderr io.Writer) (scaleFlags, error) {
	var f scaleFlags
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.etcdBin, "etcd", "", "the etcd server binary (required)")
	fs.StringVar(&f.dir, "data", "", "parent directory of the members' data and logs (default: a new temporary directory)")
	fs.IntVar(&f.port, "port", 24790, "first of the 8 loopback ports: client and peer of each of the 3 members and of the one added")
	fs.IntVar(&f.keys, "keys", 100_000, "distinct keys to write")
	fs.IntVar(&f.valueSize, "value-size", 100, "bytes per value")
	fs.BoolVar(&f.json, "json", false, "print one JSON report on stdout instead of a table")
	fs.BoolVar(&f.keepData, "keep-data", false, "keep the members' data directories (removed by default; logs stay)")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	switch {
	case fs.NArg() > 0:
		return f, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case f.etcdBin == "":
		return f, errors.New("--etcd: the etcd server binary is required")
	case f.port < 1 || f.port > 65535-7:
		return f, fmt.Errorf("--port: %d is not between 1 and 65528", f.port)
	case f.keys < 1 || f.keys > 10_000_000:
		return f, fmt.Errorf("--keys: %d is not between 1 and 10000000", f.keys)
	case f.valueSize < 2 || f.valueSize > 1<<20:
		return f, fmt.Errorf("--value-size: %d is not between 2 and 1048576", f.valueSize)
	}
	return f, nil
}

// scaleCmd starts a 3-member etcd on loopback ports, writes --keys keys
// into it and measures what they cost, as `consensus bench --scale-keys`
// measures ours; it stops every member it started before returning.
func scaleCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, err := parseScaleFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "etcd scale:", err)
		return 2
	}
	text := io.Discard
	if !f.json {
		text = stdout
	}
	ec, err := newEtcdCluster(f)
	if err != nil {
		fmt.Fprintln(stderr, "etcd scale:", err)
		return 1
	}
	s, err := ec.measure(ctx, f, text)
	if closeErr := ec.close(); err == nil {
		err = closeErr
	}
	if f.json && s != nil {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = errors.Join(err, enc.Encode(s))
	}
	if err != nil {
		fmt.Fprintln(stderr, "etcd scale:", err)
		return 1
	}
	return 0
}

// etcdMember is one member of an etcdCluster.
type etcdMember struct {
	name, client, peer, data string
}

// etcdCluster is a local etcd whose member processes this command runs,
// so it may stop and restart them.
type etcdCluster struct {
	bin, dir       string
	ownDir, keep   bool
	members        []etcdMember
	initialCluster string

	mu    sync.Mutex
	procs []*exec.Cmd
	done  []chan struct{}
}

func newEtcdCluster(f scaleFlags) (*etcdCluster, error) {
	ec := &etcdCluster{bin: f.etcdBin, dir: f.dir, keep: f.keepData}
	if ec.dir == "" {
		d, err := os.MkdirTemp("", "etcd-scale-")
		if err != nil {
			return nil, err
		}
		ec.dir, ec.ownDir = d, true
	} else if err := os.MkdirAll(ec.dir, 0o700); err != nil {
		return nil, err
	}
	for i := range 4 {
		client, peer := f.port+2*i, f.port+2*i+1
		for _, p := range []int{client, peer} {
			if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), time.Second); err == nil {
				c.Close()
				return nil, fmt.Errorf("port %d on 127.0.0.1 is in use; choose another --port", p)
			}
		}
		name := fmt.Sprintf("e%d", i+1)
		ec.members = append(ec.members, etcdMember{name: name, client: fmt.Sprintf("127.0.0.1:%d", client),
			peer: fmt.Sprintf("http://127.0.0.1:%d", peer), data: filepath.Join(ec.dir, name)})
	}
	var cluster []string
	for _, m := range ec.members[:3] {
		cluster = append(cluster, m.name+"="+m.peer)
	}
	ec.initialCluster = strings.Join(cluster, ",")
	ec.procs = make([]*exec.Cmd, len(ec.members))
	ec.done = make([]chan struct{}, len(ec.members))
	return ec, nil
}

// start starts member i with --initial-cluster cluster in state ("new"
// or "existing"), its output appended to <dir>/<name>.log. Our timings
// (--heartbeat-interval 50 --election-timeout 300), as
// scripts/bench-etcd.sh starts etcd; fsync on, etcd's defaults otherwise.
func (ec *etcdCluster) start(i int, cluster, state string) error {
	m := ec.members[i]
	log, err := os.OpenFile(filepath.Join(ec.dir, m.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(ec.bin, "--name", m.name, "--data-dir", m.data,
		"--listen-client-urls", "http://"+m.client, "--advertise-client-urls", "http://"+m.client,
		"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
		"--initial-cluster", cluster, "--initial-cluster-state", state, "--initial-cluster-token", "etcd-scale",
		"--heartbeat-interval", "50", "--election-timeout", "300",
		"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn")
	// etcd reads ETCD_* variables as flags: give it none.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "ETCD_") })
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", m.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(done)
	}()
	ec.mu.Lock()
	ec.procs[i], ec.done[i] = cmd, done
	ec.mu.Unlock()
	return nil
}

// stop sends SIGTERM to member i and waits until it is reaped (SIGKILL
// after a minute).
func (ec *etcdCluster) stop(i int) {
	ec.mu.Lock()
	cmd, done := ec.procs[i], ec.done[i]
	ec.procs[i], ec.done[i] = nil, nil
	ec.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (ec *etcdCluster) pid(i int) int {
	ec.mu.Lock()
	defer ec.mu.Unlock()
	if ec.procs[i] == nil {
		return 0
	}
	return ec.procs[i].Process.Pid
}

// close stops every member and removes the data directories unless
// kept; the logs stay.
func (ec *etcdCluster) close() error {
	var err error
	for i := range ec.members {
		ec.stop(i)
		if !ec.keep {
			err = errors.Join(err, os.RemoveAll(ec.members[i].data))
		}
	}
	return err
}

func (ec *etcdCluster) endpoints(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = ec.members[i].client
	}
	return out
}

// measure starts the 3 members, fills them, and takes every figure.
func (ec *etcdCluster) measure(ctx context.Context, f scaleFlags, text io.Writer) (*bench.Scale, error) {
	s := &bench.Scale{System: "etcd", Keys: f.keys, ValueSize: f.valueSize, LoadStart: bench.LoadAvg()}
	// Also when a figure fails: the report keeps the others.
	defer func() {
		if s.LoadEnd == "" {
			s.LoadEnd = bench.LoadAvg()
		}
	}()
	pids, dirs := map[string]int{}, map[string]string{}
	for i := range 3 {
		if err := ec.start(i, ec.initialCluster, "new"); err != nil {
			return nil, err
		}
		pids[ec.members[i].name], dirs[ec.members[i].name] = ec.pid(i), ec.members[i].data
	}
	fmt.Fprintf(text, "etcd scale: local 3-member etcd, data and logs in %s\n", ec.dir)
	// The fill is timed from a cluster with a leader, as ours is.
	if _, _, err := leaderFirst(ctx, ec.endpoints(3), 30*time.Second); err != nil {
		return nil, err
	}
	start := time.Now()
	report, err := fill(ctx, ec.endpoints(3), pids, dirs, f.keys, f.valueSize, 5*time.Second, text, false)
	if err != nil {
		return nil, err
	}
	s.Fill, s.Memory, s.Version = time.Since(start), report.Memory, report.Version

	eps, _, err := leaderFirst(ctx, ec.endpoints(3), 30*time.Second)
	if err != nil {
		return s, err
	}
	if s.SnapshotBytes, s.Snapshot, err = saveSnapshot(ctx, eps[0], filepath.Join(ec.dir, "backup.db")); err != nil {
		return s, fmt.Errorf("snapshot: %w", err)
	}
	fmt.Fprintf(text, "\nsnapshot from the leader: %s in %v\n", bench.MiB(s.SnapshotBytes), s.Snapshot.Round(time.Millisecond))

	follower := slices.IndexFunc(ec.members[:3], func(m etcdMember) bool { return m.client == eps[1] })
	ec.stop(follower)
	if s.RestartNode, err = ec.timeRestart(ctx, follower); err != nil {
		return s, err
	}
	fmt.Fprintf(text, "%s restarted, serving linearizable reads, in %v\n", ec.members[follower].name, s.RestartNode.Round(time.Millisecond))
	for i := range 3 {
		ec.stop(i)
	}
	if s.RestartCluster, err = ec.timeRestart(ctx, 0, 1, 2); err != nil {
		return s, err
	}
	fmt.Fprintf(text, "whole cluster restarted, every member serving linearizable reads, in %v\n", s.RestartCluster.Round(time.Millisecond))

	if s.CatchUp, s.CatchUpRSS, err = ec.timeLearner(ctx); err != nil {
		return s, err
	}
	fmt.Fprintf(text, "new member (learner) caught up in %v, RSS then %s\n\n", s.CatchUp.Round(time.Millisecond), bench.MiB(s.CatchUpRSS))
	s.LoadEnd = bench.LoadAvg()
	bench.WriteScale(text, s)
	return s, nil
}

// saveSnapshot streams etcd's snapshot (Maintenance.Snapshot, as
// `etcdctl snapshot save` takes it) from the member at ep into file,
// syncs it and removes it; it returns its size and the time from the
// request to the sync.
func saveSnapshot(ctx context.Context, ep, file string) (int64, time.Duration, error) {
	cli, err := newClient([]string{ep})
	if err != nil {
		return 0, 0, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, scaleWait)
	defer cancel()
	start := time.Now()
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer rc.Close()
	out, err := os.Create(file)
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(file)
	n, err := io.Copy(out, rc)
	if err == nil {
		err = out.Sync()
	}
	if closeErr := out.Close(); err == nil {
		err = closeErr
	}
	return n, time.Since(start), err
}

// timeRestart starts the stopped members in idx (of the initial 3) and
// returns the time until each serves a linearizable Get.
func (ec *etcdCluster) timeRestart(ctx context.Context, idx ...int) (time.Duration, error) {
	start := time.Now()
	for _, i := range idx {
		if err := ec.start(i, ec.initialCluster, "new"); err != nil {
			return 0, err
		}
	}
	for _, i := range idx {
		err := waitMember(ctx, ec.members[i].client, scaleWait, func(ctx context.Context, cli *clientv3.Client) error {
			_, err := cli.Get(ctx, bench.Key(0))
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("%s after its restart (log in %s): %w", ec.members[i].name, ec.dir, err)
		}
	}
	return time.Since(start), nil
}

// waitMember waits until ok, through a client of the member at ep alone,
// returns nil, for up to timeout. It first waits for the port to accept connections, then
// dials a new client per attempt, so gRPC's reconnection backoff does
// not lengthen the time measured.
func waitMember(ctx context.Context, ep string, timeout time.Duration, ok func(context.Context, *clientv3.Client) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", ep); err != nil {
			last = err
		} else {
			c.Close()
			if cli, err := newClient([]string{ep}); err != nil {
				last = err
			} else {
				actx, acancel := context.WithTimeout(ctx, time.Second)
				last = ok(actx, cli)
				acancel()
				cli.Close()
				if last == nil {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not within %v: %w", ep, timeout, errors.Join(last, ctx.Err()))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// timeLearner adds a fourth member as a learner (MemberAddAsLearner),
// starts it with --initial-cluster-state existing and returns the time
// from its start until its applied index reaches the leader's last index,
// and its RSS then.
func (ec *etcdCluster) timeLearner(ctx context.Context) (time.Duration, int64, error) {
	eps, _, err := leaderFirst(ctx, ec.endpoints(3), 30*time.Second)
	if err != nil {
		return 0, 0, err
	}
	cli, err := newClient(eps[:1])
	if err != nil {
		return 0, 0, err
	}
	defer cli.Close()
	const i = 3
	m := ec.members[i]
	// etcd refuses a member until every member has been connected for
	// 5 s ("unhealthy cluster"), as after the restart above: retry.
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var resp *clientv3.MemberAddResponse
	for {
		if resp, err = cli.MemberAddAsLearner(actx, []string{m.peer}); err == nil {
			break
		}
		select {
		case <-actx.Done():
			return 0, 0, fmt.Errorf("member add: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	var cluster []string
	for _, mm := range resp.Members {
		name := mm.Name
		if mm.ID == resp.Member.ID {
			name = m.name
		}
		for _, u := range mm.PeerURLs {
			cluster = append(cluster, name+"="+u)
		}
	}
	start := time.Now()
	if err := ec.start(i, strings.Join(cluster, ","), "existing"); err != nil {
		return 0, 0, err
	}
	err = waitMember(ctx, m.client, learnerWait, func(ctx context.Context, own *clientv3.Client) error {
		st, err := own.Status(ctx, m.client)
		if err != nil {
			return err
		}
		lst, err := cli.Status(ctx, eps[0])
		if err != nil {
			return err
		}
		if st.RaftAppliedIndex < lst.RaftIndex {
			return fmt.Errorf("applied %d of the leader's %d", st.RaftAppliedIndex, lst.RaftIndex)
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("%s (learner; log in %s): %w", m.name, ec.dir, err)
	}
	d := time.Since(start)
	pm, err := bench.ProcMemory(ec.pid(i))
	return d, pm.RSS, err
}

// scaleCompareCmd prints the table of etcd scale's and consensus bench
// --scale-keys's JSON reports side by side.
func scaleCompareCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scale-compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	etcdFile := fs.String("etcd", "", "etcd scale --json's report")
	oursFile := fs.String("ours", "", "consensus bench --scale-keys --json's report")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *etcdFile == "" && *oursFile == "" {
		fmt.Fprintln(stderr, "etcd scale-compare: --etcd or --ours (or both) is required")
		return 2
	}
	etcd, err := readScale(*etcdFile, false)
	var ours *bench.Scale
	if err == nil {
		ours, err = readScale(*oursFile, true)
	}
	if err == nil && etcd != nil && ours != nil && (etcd.Keys != ours.Keys || etcd.ValueSize != ours.ValueSize) {
		err = fmt.Errorf("etcd's report is of %d keys of %d B, ours of %d keys of %d B", etcd.Keys, etcd.ValueSize, ours.Keys, ours.ValueSize)
	}
	if err != nil {
		fmt.Fprintln(stderr, "etcd scale-compare:", err)
		return 1
	}
	bench.WriteScale(stdout, etcd, ours)
	return 0
}

// readScale reads a scale report from file (nil if file is ""); ours is
// inside consensus bench's report, under "scale".
func readScale(file string, ours bool) (*bench.Scale, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if ours {
		var r struct {
			Scale *bench.Scale `json:"scale"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if r.Scale == nil {
			return nil, fmt.Errorf("%s: not a report of consensus bench --scale-keys --json", file)
		}
		return r.Scale, nil
	}
	var s bench.Scale
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if s.System != "etcd" {
		return nil, fmt.Errorf("%s: not a report of etcd scale --json", file)
	}
	return &s, nil
}
