package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/backup"
	"github.com/unrdf/consensus/internal/certs"
	"github.com/unrdf/consensus/internal/testcluster"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/server"
)

// snapLeaderTimeout bounds each wait for a leader in these tests.
const snapLeaderTimeout = 20 * time.Second

// startSnapCluster starts nodes ids in this process (internal/testcluster),
// each on root/<id>, after prepare (called with the peer list once it is
// known, if not nil) has written those data directories, and waits for
// their leader.
func startSnapCluster(t *testing.T, root string, ids []string, prepare func(peers map[string]string)) *testcluster.Cluster {
	t.Helper()
	return testcluster.Start(t, len(ids), testcluster.IDs(ids...), testcluster.Dir(root),
		testcluster.BeforeStart(prepare), testcluster.LeaderWithin(snapLeaderTimeout))
}

// ackedPut is one acknowledged write.
type ackedPut struct {
	key   string
	value string
	rev   int64
}

// A backup taken while writers run holds exactly the writes at or below
// its revision R, and a cluster restored from it (new members, new
// addresses) has exactly that state, a different cluster id, and takes
// new writes. A damaged copy of the file is refused by status and
// restore, and restore leaves no directory behind.
func TestSnapshotSaveRestoreUnderWrites(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	root := t.TempDir()
	src := startSnapCluster(t, filepath.Join(root, "src"), []string{"n1", "n2", "n3"}, nil)
	lead := src.WaitLeader(t, snapLeaderTimeout)

	// Writers: each its own keys, on its own node, new keys appearing as
	// it goes, every acknowledged put recorded with its revision.
	const writers = 4
	var (
		stop      atomic.Bool
		acked     atomic.Int64
		wg        sync.WaitGroup
		logs      = make([][]ackedPut, writers)
		uncertain = make([]map[string]bool, writers)
	)
	for w := range writers {
		uncertain[w] = map[string]bool{}
		store := src.Servers[src.IDs[w%len(src.IDs)]].Store()
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; !stop.Load(); seq++ {
				key := fmt.Sprintf("w%d/%03d", w, rng.IntN(4+seq/3))
				value := fmt.Sprintf(`{"w":%d,"seq":%d}`, w, seq)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				rev, err := store.Put(ctx, key, []byte(value))
				cancel()
				if err != nil {
					// Outcome unknown: this key cannot be checked exactly.
					uncertain[w][key] = true
					continue
				}
				logs[w] = append(logs[w], ackedPut{key, value, rev})
				acked.Add(1)
			}
		}()
	}
	waitAcked := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for acked.Load() < n {
			if time.Now().After(deadline) {
				stop.Store(true)
				wg.Wait()
				t.Fatalf("only %d writes acknowledged, waiting for %d", acked.Load(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitAcked(200)

	// Save from a follower first in the list: any member serves it.
	var follower string
	for _, id := range src.IDs {
		if id != lead {
			follower = id
			break
		}
	}
	endpoints := src.HTTP[follower]
	for _, id := range src.IDs {
		if id != follower {
			endpoints += "," + src.HTTP[id]
		}
	}
	file := filepath.Join(root, "backup.snap")
	var stdout, stderr bytes.Buffer
	if code := snapshotRun([]string{"save", file, "--endpoints", endpoints}, &stdout, &stderr); code != 0 {
		stop.Store(true)
		wg.Wait()
		t.Fatalf("save: exit %d: %s", code, stderr.String())
	}
	atSave := acked.Load()
	waitAcked(atSave + 200)
	stop.Store(true)
	wg.Wait()
	t.Logf("save: %s", strings.TrimSpace(stdout.String()))
	if _, err := os.Stat(file + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("save left %s.tmp: %v", file, err)
	}

	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	meta, sum, err := backup.Verify(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	R := meta.Revision
	if meta.Node != follower || meta.ClusterID != src.Servers[lead].Node().ClusterID() || meta.ClusterID == 0 {
		t.Fatalf("metadata %+v (follower %s, cluster %x)", meta, follower, src.Servers[lead].Node().ClusterID())
	}
	if !strings.Contains(stdout.String(), fmt.Sprintf("revision %d,", R)) || !strings.Contains(stdout.String(), sum.ChecksumString()) {
		t.Fatalf("save output %q lacks revision %d or checksum %s", stdout.String(), R, sum.ChecksumString())
	}

	// The state at R: for each key, the last acknowledged write at or
	// below R. Writes after R must be absent, including keys created after.
	want := map[string]ackedPut{}
	var after, afterOnly int
	seenBefore := map[string]bool{}
	for w := range writers {
		for _, p := range logs[w] {
			if p.rev <= R {
				if cur, ok := want[p.key]; !ok || p.rev > cur.rev {
					want[p.key] = p
				}
				seenBefore[p.key] = true
			} else {
				after++
			}
		}
		for _, p := range logs[w] {
			if p.rev > R && !seenBefore[p.key] {
				afterOnly++
			}
		}
	}
	t.Logf("backup at revision %d: %d keys expected; %d acknowledged writes after it, %d of them to keys absent at R; %d bytes",
		R, len(want), after, afterOnly, sum.Size)
	if after == 0 || afterOnly == 0 || len(want) == 0 {
		t.Fatalf("the workload did not straddle the backup: %d writes after R, %d to new keys, %d keys before", after, afterOnly, len(want))
	}
	if meta.Keys != int64(len(want)) && countUncertain(uncertain) == 0 {
		t.Fatalf("backup counts %d keys, the acknowledged writes give %d", meta.Keys, len(want))
	}

	// status verifies and prints the metadata.
	stdout.Reset()
	if code := snapshotRun([]string{"status", file}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), fmt.Sprintf("revision:      %d\n", R)) {
		t.Fatalf("status: exit %d: %s %s", code, stdout.String(), stderr.String())
	}

	// The same backup in etcd's snapshot envelope (as `etcdctl snapshot
	// save` keeps it from Maintenance.Snapshot) is read as well: status
	// here, and r2 below is restored from it.
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	wrapped := filepath.Join(root, "etcdctl.snap")
	var env bytes.Buffer
	ew := backup.NewEtcdWriter(&env)
	if _, err := ew.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := ew.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrapped, env.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if code := snapshotRun([]string{"status", wrapped}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), fmt.Sprintf("revision:      %d\n", R)) {
		t.Fatalf("status of the etcd envelope: exit %d: %s %s", code, stdout.String(), stderr.String())
	}

	// A damaged copy is refused by status and restore; no directory left.
	damaged := filepath.Join(root, "damaged.snap")
	b[len(b)/2] ^= 0x04
	if err := os.WriteFile(damaged, b, 0o600); err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(root, "truncated.snap")
	if err := os.WriteFile(truncated, b[:len(b)-100], 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{damaged, truncated} {
		stderr.Reset()
		if code := snapshotRun([]string{"status", bad}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), backup.ErrCorrupt.Error()) {
			t.Fatalf("status of %s: exit %d: %s", bad, code, stderr.String())
		}
		dir := filepath.Join(root, "never")
		stderr.Reset()
		if code := snapshotRun([]string{"restore", bad, "--data", dir, "--id", "a", "--peers", "a=127.0.0.1:1"}, &stdout, &stderr); code != 1 ||
			!strings.Contains(stderr.String(), backup.ErrCorrupt.Error()) {
			t.Fatalf("restore of %s: exit %d: %s", bad, code, stderr.String())
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("restore of %s left %s: %v", bad, dir, err)
		}
	}

	// Restore into a new cluster: new names, new addresses.
	newRoot := filepath.Join(root, "restored")
	newIDs := []string{"r1", "r2", "r3"}
	dst := startSnapCluster(t, newRoot, newIDs, func(peers map[string]string) {
		var list []string
		for _, id := range newIDs {
			list = append(list, id+"="+peers[id])
		}
		for _, id := range newIDs {
			stdout.Reset()
			stderr.Reset()
			from := file
			if id == "r2" {
				from = wrapped
			}
			code := snapshotRun([]string{"restore", from, "--data", filepath.Join(newRoot, id), "--id", id,
				"--peers", strings.Join(list, ",")}, &stdout, &stderr)
			if code != 0 {
				t.Fatalf("restore %s: exit %d: %s", id, code, stderr.String())
			}
		}
		t.Logf("restore: %s", strings.TrimSpace(stdout.String()))
	})
	// Refused: a data directory that is not empty.
	stderr.Reset()
	if code := snapshotRun([]string{"restore", file, "--data", filepath.Join(newRoot, "r1"), "--id", "r1",
		"--peers", "r1=127.0.0.1:1"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "not empty") {
		t.Fatalf("restore into a used directory: exit %d: %s", code, stderr.String())
	}

	dst.WaitLeader(t, snapLeaderTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cid := dst.Servers["r1"].Node().ClusterID()
	for _, id := range newIDs {
		n := dst.Servers[id].Node()
		if got := n.ClusterID(); got != cid || got == meta.ClusterID || got == 0 || got == consensus.ClusterID(dst.Peers) {
			t.Fatalf("%s: cluster id %x (r1 %x, source %x)", id, got, cid, meta.ClusterID)
		}
		var members []string
		for _, m := range n.Status().Members {
			members = append(members, m.ID)
		}
		if !slices.Equal(members, newIDs) {
			t.Fatalf("%s: members %v, want %v", id, members, newIDs)
		}
		items, rev, err := dst.Servers[id].Store().List(ctx, "", kv.Linearizable)
		if err != nil {
			t.Fatalf("%s: list: %v", id, err)
		}
		if rev != R {
			t.Fatalf("%s: revision %d, the backup's is %d", id, rev, R)
		}
		checkState(t, id, items, want, uncertain)
	}

	// New writes are accepted, after R, and read back elsewhere.
	rev, err := dst.Servers["r2"].Store().Put(ctx, "after/restore", []byte(`"yes"`))
	if err != nil || rev != R+1 {
		t.Fatalf("write to the restored cluster: revision %d (backup %d), %v", rev, R, err)
	}
	it, err := dst.Servers["r3"].Store().Get(ctx, "after/restore", kv.Linearizable)
	if err != nil || string(it.Value) != `"yes"` || it.Revision != R+1 {
		t.Fatalf("read back: %+v %v", it, err)
	}

	// After its first start a restored directory is an ordinary one: the
	// whole restored cluster stops and starts again with its state, the
	// write made after the restore, and its cluster id.
	for _, id := range newIDs {
		dst.Stop(t, id)
	}
	for _, id := range newIDs {
		dst.Restart(t, id)
	}
	dst.WaitLeader(t, snapLeaderTimeout)
	for _, id := range newIDs {
		if got := dst.Servers[id].Node().ClusterID(); got != cid {
			t.Fatalf("%s after restart: cluster %x, want %x", id, got, cid)
		}
		it, err := dst.Servers[id].Store().Get(ctx, "after/restore", kv.Linearizable)
		if err != nil || it.Revision != R+1 {
			t.Fatalf("%s after restart: %+v %v", id, it, err)
		}
		items, rev, err := dst.Servers[id].Store().List(ctx, "w", kv.Linearizable)
		if err != nil || rev != R+1 {
			t.Fatalf("%s after restart: list at revision %d, want %d: %v", id, rev, R+1, err)
		}
		checkState(t, id, items, want, uncertain)
	}
}

func countUncertain(u []map[string]bool) int {
	n := 0
	for _, m := range u {
		n += len(m)
	}
	return n
}

// checkState compares a restored node's items with the expected state,
// skipping keys whose last write's outcome was unknown.
func checkState(t *testing.T, id string, items []kv.Item, want map[string]ackedPut, uncertain []map[string]bool) {
	t.Helper()
	isUncertain := func(key string) bool {
		for _, m := range uncertain {
			if m[key] {
				return true
			}
		}
		return false
	}
	got := map[string]kv.Item{}
	for _, it := range items {
		got[it.Key] = it
	}
	for key, p := range want {
		it, ok := got[key]
		if isUncertain(key) {
			continue
		}
		if !ok || string(it.Value) != p.value || it.Revision != p.rev {
			t.Fatalf("%s: %s = %+v (present %v), want %s at revision %d", id, key, it, ok, p.value, p.rev)
		}
	}
	for key := range got {
		if _, ok := want[key]; !ok && !isUncertain(key) {
			t.Fatalf("%s: %s is in the restored state but was written only after the backup", id, key)
		}
	}
}

// save from a server with mutual TLS (--client-ca): over TLS (--cacert),
// with a client certificate (--cert, --key) and a read-only token
// (--token, or --token-file); refused without a token (401, not retried
// on the next endpoint), without a client certificate, against an
// unknown CA and over plain HTTP, leaving no file behind.
func TestSnapshotSaveTLSAndToken(t *testing.T) {
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	if err := certs.WriteDev(certDir, []string{"n1", "admin"}); err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := certs.ServerConfig(filepath.Join(certDir, "n1.pem"), filepath.Join(certDir, "n1-key.pem"), filepath.Join(certDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := server.ParseTokens(strings.NewReader("rw-token rw\nro-token ro\n"))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.Start(server.Config{Node: consensus.DefaultConfig("n1"), PeerListener: pl, HTTPListener: hl,
		DataDir: filepath.Join(dir, "n1"), HTTPTLS: tlsCfg, HTTP: server.HTTPOptions{Tokens: tokens}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	deadline := time.Now().Add(10 * time.Second)
	for srv.Node().Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := srv.Store().Put(ctx, "a", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "b.snap")
	ca := filepath.Join(certDir, "ca.pem")
	clientCert := []string{"--cert", filepath.Join(certDir, "admin.pem"), "--key", filepath.Join(certDir, "admin-key.pem")}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("ro-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envToken, "")
	var stdout, stderr bytes.Buffer
	for _, auth := range [][]string{{"--token", "ro-token"}, {"--token-file", tokenFile}} {
		stdout.Reset()
		args := append([]string{"save", file, "--endpoints", srv.HTTPAddr(), "--cacert", ca}, append(clientCert, auth...)...)
		if code := snapshotRun(args, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "revision 1, 1 keys") {
			t.Fatalf("save %q: exit %d: %s %s", args, code, stdout.String(), stderr.String())
		}
	}

	stdout.Reset()
	if code := snapshotRun([]string{"status", "--json", file}, &stdout, &stderr); code != 0 {
		t.Fatalf("status --json: exit %d: %s", code, stderr.String())
	}
	var st struct {
		Version  int    `json:"version"`
		Size     int64  `json:"size"`
		Checksum string `json:"checksum"`
		Metadata struct {
			ClusterID string `json:"clusterId"`
			Revision  int64  `json:"revision"`
			Keys      int64  `json:"keys"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
		t.Fatalf("status --json: %v: %s", err, stdout.String())
	}
	if st.Version != backup.Version || st.Size <= 0 || len(st.Checksum) != 8 || st.Metadata.Revision != 1 || st.Metadata.Keys != 1 ||
		st.Metadata.ClusterID != fmt.Sprintf("%x", srv.Node().ClusterID()) {
		t.Fatalf("status --json: %s", stdout.String())
	}

	// Refusals: no token (not retried on the second endpoint), a CA that
	// did not sign the server's certificate.
	other := filepath.Join(dir, "other")
	if err := certs.WriteDev(other, nil); err != nil {
		t.Fatal(err)
	}
	twice := srv.HTTPAddr() + "," + srv.HTTPAddr()
	for name, args := range map[string][]string{
		"no token":       append([]string{"--endpoints", twice, "--cacert", ca}, clientCert...),
		"no client cert": {"--endpoints", srv.HTTPAddr(), "--cacert", ca, "--token", "ro-token"},
		"wrong CA":       append([]string{"--endpoints", srv.HTTPAddr(), "--cacert", filepath.Join(other, "ca.pem"), "--token", "ro-token"}, clientCert...),
		"plain HTTP":     {"--endpoints", "http://" + srv.HTTPAddr() + ",http://" + srv.HTTPAddr(), "--token", "ro-token"},
	} {
		stderr.Reset()
		file := filepath.Join(dir, "refused.snap")
		code := snapshotRun(append([]string{"save", file}, args...), &stdout, &stderr)
		if code != 1 || strings.Count(stderr.String(), "\n") != 1 || !strings.HasPrefix(stderr.String(), "consensus: snapshot save: ") {
			t.Fatalf("%s: exit %d: %s", name, code, stderr.String())
		}
		if name == "no token" && (!strings.Contains(stderr.String(), "unauthorized") || strings.Count(stderr.String(), srv.HTTPAddr()) != 1) {
			t.Fatalf("%s: %s", name, stderr.String())
		}
		if name == "plain HTTP" && (!strings.Contains(stderr.String(), "this endpoint speaks HTTPS: use https:// and --cacert") ||
			strings.Count(stderr.String(), srv.HTTPAddr()) != 1) {
			t.Fatalf("%s: %s", name, stderr.String())
		}
		for _, f := range []string{file, file + ".tmp"} {
			if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s: %s left behind: %v", name, f, err)
			}
		}
	}
}

// Usage errors exit 2, failures 1, help 0; every failure is one line,
// "consensus: snapshot <command>: ...".
func TestSnapshotCmdUsage(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(envEndpoints, "")
	t.Setenv(envToken, "")
	cases := []struct {
		args   []string
		code   int
		stderr string // a part of the one line
	}{
		{nil, 2, "snapshot: missing subcommand (restore, save, status"},
		{[]string{"frobnicate"}, 2, `snapshot: unknown subcommand "frobnicate"`},
		{[]string{"help"}, 0, ""},
		{[]string{"--help"}, 0, ""},
		{[]string{"save"}, 2, "snapshot save: want 1 argument(s) (FILE), got 0"},
		{[]string{"save", "a", "b"}, 2, "snapshot save: want 1 argument(s) (FILE), got 2"},
		{[]string{"save", "a", "--endpoints", ""}, 2, "snapshot save: --endpoints names no endpoint"},
		{[]string{"save", "a", "--cacert", filepath.Join(dir, "missing.pem")}, 2, "snapshot save: --cacert, --cert, --key:"},
		{[]string{"save", "a", "--cert", filepath.Join(dir, "c.pem")}, 2, "snapshot save: if any flags in the group [cert key] are set they must all be set"},
		{[]string{"save", "a", "--token", "t", "--token-file", filepath.Join(dir, "t")}, 2, "snapshot save: if any flags in the group [token token-file] are set none of the others can be"},
		{[]string{"save", "a", "--token-file", filepath.Join(dir, "missing")}, 2, "snapshot save: --token-file:"},
		{[]string{"save", "a", "-o", "json"}, 2, "snapshot save: --output: not a flag of this command"},
		{[]string{"save", "a", "--timeout", "0s"}, 2, "snapshot save: --timeout 0s"},
		{[]string{"status"}, 2, "snapshot status: want 1 argument(s) (FILE), got 0"},
		{[]string{"status", filepath.Join(dir, "missing")}, 1, "snapshot status: " + filepath.Join(dir, "missing")},
		{[]string{"status", "f", "--endpoints", "x:1"}, 2, "snapshot status: --endpoints: not a flag of this command"},
		{[]string{"status", "--help"}, 0, ""},
		{[]string{"status", "-json", "f"}, 2, "unknown shorthand flag: 'j' in -json"},
		{[]string{"restore", "f", "--data", dir}, 2, "snapshot restore: --data, --id and --peers are required"},
		{[]string{"restore", "f", "--data", dir, "--id", "a", "--peers", "b=127.0.0.1:1"}, 2, `snapshot restore: --id "a" is not in --peers`},
		{[]string{"restore", "f", "--data", dir, "--id", "a", "--peers", "a"}, 2, "snapshot restore: "},
		{[]string{"restore", filepath.Join(dir, "missing"), "--data", filepath.Join(dir, "d"), "--id", "a", "--peers", "a=127.0.0.1:1"}, 1, "snapshot restore: "},
	}
	for _, c := range cases {
		args := append([]string{"snapshot"}, c.args...)
		r := runCLI(context.Background(), "", args...)
		checkOneLine(t, args, r)
		if r.code != c.code || !strings.Contains(r.stderr, c.stderr) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", args, r.code, r.stderr, c.code, c.stderr)
		}
		if c.code == 0 && (!strings.Contains(r.stdout, "Usage:") || r.stderr != "") {
			t.Errorf("%q: help: stdout %q, stderr %q", args, r.stdout, r.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "d")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed restore created its directory: %v", err)
	}
	// save's help lists the global flags it takes, and only those.
	r := runCLI(context.Background(), "", "snapshot", "save", "--help")
	for _, f := range []string{"--endpoints", "--token-file", "--cert", "--key", "--cacert", "--timeout duration   bound on the whole download (default 10m0s)"} {
		if !strings.Contains(r.stdout, f) {
			t.Errorf("snapshot save --help lacks %s:\n%s", f, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "--output") {
		t.Errorf("snapshot save --help lists --output:\n%s", r.stdout)
	}
}

// snapshotRun runs `consensus snapshot ARGS...` in process.
func snapshotRun(args []string, stdout, stderr io.Writer) int {
	return execute(context.Background(), append([]string{"snapshot"}, args...), stdout, stderr, cliEnv{})
}
