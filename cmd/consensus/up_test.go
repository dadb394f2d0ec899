package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unrdf/consensus/internal/loopback"
	"github.com/unrdf/consensus/internal/testwait"
)

// lockedBuffer is a bytes.Buffer that goroutines may write while the test
// reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestServeUsageErrors checks that serve refuses bad addresses, a --listen
// that is not the node's own --peers entry, and client flags, with one
// line and exit 2, before it touches a port or the data directory.
func TestServeUsageErrors(t *testing.T) {
	data := filepath.Join(t.TempDir(), "n1")
	cases := []struct {
		args   []string
		stderr string
	}{
		{[]string{"serve"}, "consensus: serve: --id is required"},
		{[]string{"serve", "--id", "n1", "extra"}, "serve: want 0 argument(s)"},
		{[]string{"serve", "--id", "n1", "--bogus"}, "serve: unknown flag: --bogus"},
		{[]string{"serve", "--id", "n1", "-id", "n2"}, "serve: unknown shorthand flag"},
		{[]string{"serve", "--id", "n1", "--peers", "n1=127.0.0.1:99999", "--listen", "127.0.0.1:8080"}, `--peers: n1: "127.0.0.1:99999": port "99999" is not a number`},
		{[]string{"serve", "--id", "n1", "--peers", "n1=127.0.0.1:8080,n2=127.0.0.1:0"}, `--peers: n2: "127.0.0.1:0": port "0"`},
		{[]string{"serve", "--id", "n1", "--peers", "n1=127.0.0.1:8080,n2=nohost"}, `--peers: n2: "nohost" is not host:port`},
		{[]string{"serve", "--id", "n1", "--listen", "127.0.0.1:70000"}, `--listen "127.0.0.1:70000": port`},
		{[]string{"serve", "--id", "n1", "--http", "localhost"}, `--http "localhost" is not host:port`},
		{[]string{"serve", "--id", "n1", "--listen", "127.0.0.1:8081", "--peers", "n1=127.0.0.1:8080,n2=127.0.0.1:8082"},
			"serve: --listen 127.0.0.1:8081 is not n1's address in --peers (127.0.0.1:8080)"},
		{[]string{"serve", "--id", "n1", "--peers", "n1=127.0.0.1:8085"}, "--listen 127.0.0.1:8080 is not n1's address in --peers"},
		{[]string{"serve", "--id", "n1", "--endpoints", "127.0.0.1:1"}, "serve: --endpoints: not a flag of this command"},
		{[]string{"serve", "--id", "n1", "--gc-percent", "0"}, "serve: --gc-percent 0 is not between 1 and 10000"},
		{[]string{"serve", "--id", "n1", "--gc-percent", "-1"}, "serve: --gc-percent -1 is not between 1 and 10000"},
		{[]string{"up", "--nodes", "0"}, "consensus: up: --nodes must be between 1 and 9"},
		{[]string{"up", "--max-watches-per-client", "-1"}, "consensus: up: --max-watches-per-client must not be negative"},
		{[]string{"up", "--http-port", "65535"}, "up: --http-port 65535: the ports of 3 nodes"},
		{[]string{"up", "--token", "t"}, "up: --token: not a flag of this command"},
		{[]string{"up", "-nodes", "1"}, "up: unknown shorthand flag"},
	}
	for _, c := range cases {
		args := c.args
		if args[0] == "serve" {
			args = append(args, "--data", data)
		}
		r := runCLI(context.Background(), "", args...)
		checkOneLine(t, args, r)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.stderr) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and %q", args, r.code, r.stderr, c.stderr)
		}
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("a refused serve touched its data directory: %v", err)
	}
	// Help is double-dash cobra help on stdout, exit 0.
	for _, cmd := range []string{"serve", "up"} {
		r := runCLI(context.Background(), "", cmd, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "consensus "+cmd) || !strings.Contains(r.stdout, "--data") {
			t.Errorf("%s --help: exit %d, stdout %q", cmd, r.code, r.stdout)
		}
	}
}

// TestCheckOwnPeer lists which --listen addresses serve takes for a node
// whose --peers entry is 127.0.0.1:8080.
func TestCheckOwnPeer(t *testing.T) {
	for _, c := range []struct {
		listen string
		ok     bool
	}{
		{"127.0.0.1:8080", true},
		{"0.0.0.0:8080", true},
		{"[::]:8080", true},
		{":8080", true},
		{"0.0.0.0:8081", false},
		{"127.0.0.2:8080", false},
		{"localhost:8080", false},
	} {
		if err := checkOwnPeer("n1", c.listen, "127.0.0.1:8080"); (err == nil) != c.ok {
			t.Errorf("--listen %s: err %v, want ok=%v", c.listen, err, c.ok)
		}
	}
}

// inProcessServe runs `consensus serve args...` in this process until the
// returned stop is called; stop returns the exit code.
func inProcessServe(t *testing.T, stderr *lockedBuffer, args ...string) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() {
		code <- execute(ctx, append([]string{"serve"}, args...), stderr, stderr, cliEnv{stdin: strings.NewReader("")})
	}()
	var once sync.Once
	var result int
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case result = <-code:
			case <-time.After(20 * time.Second):
				t.Fatalf("serve did not stop within 20s; output:\n%s", stderr.String())
			}
		})
		return result
	}
	t.Cleanup(func() { stop() })
	return stop
}

// members returns the peer addresses of the members a node reports.
func members(httpAddr string) (map[string]string, bool) {
	resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + httpAddr + "/v1/status")
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	var st struct {
		LeaderID string `json:"leaderId"`
		Members  []struct {
			ID       string `json:"id"`
			PeerAddr string `json:"peerAddr"`
		} `json:"members"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil || st.LeaderID == "" {
		return nil, false
	}
	out := map[string]string{}
	for _, m := range st.Members {
		out[m.ID] = m.PeerAddr
	}
	return out, true
}

// TestServeBootstrapAfterBind checks that a first start that cannot bind
// its HTTP port leaves no bootstrap behind (the retry's --peers are the
// ones used, without a warning), and that a restart with other --peers
// warns that the stored membership is kept.
func TestServeBootstrapAfterBind(t *testing.T) {
	data := filepath.Join(t.TempDir(), "n1")
	peerA, peerB, peerC, httpAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)

	busy, err := net.Listen("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	r := runCLI(context.Background(), "", "serve", "--id", "n1", "--listen", peerA, "--peers", "n1="+peerA,
		"--http", httpAddr, "--data", data, "--log-level", "warn")
	busy.Close()
	checkOneLine(t, nil, r)
	if r.code != exitFailure || !strings.Contains(r.stderr, "address already in use") {
		t.Fatalf("serve with its HTTP port taken: exit %d, stderr %q", r.code, r.stderr)
	}
	// Ports are bound before storage is opened: nothing was written.
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("a start that could not bind its ports left %s behind (%v)", data, err)
	}

	var out lockedBuffer
	stop := inProcessServe(t, &out, "--id", "n1", "--listen", peerB, "--peers", "n1="+peerB,
		"--http", httpAddr, "--data", data, "--log-level", "warn")
	var got map[string]string
	testwait.For(t, 20*time.Second, "the retried node serves with a leader", func() bool {
		var ok bool
		got, ok = members(httpAddr)
		return ok
	})
	if got["n1"] != peerB || len(got) != 1 {
		t.Fatalf("retried node's members %v, want n1=%s (the failed start's n1=%s must not be kept)", got, peerB, peerA)
	}
	if code := stop(); code != 0 {
		t.Fatalf("serve stopped with exit %d; output:\n%s", code, out.String())
	}
	if strings.Contains(out.String(), "differs from the membership") {
		t.Fatalf("a first start warned about stored membership:\n%s", out.String())
	}

	var out2 lockedBuffer
	inProcessServe(t, &out2, "--id", "n1", "--listen", peerC, "--peers", "n1="+peerC,
		"--http", httpAddr, "--data", data, "--log-level", "warn")
	want := fmt.Sprintf(`peers="n1=%s" stored="n1=%s"`, peerC, peerB)
	testwait.For(t, 20*time.Second, "a warning that --peers differ from the stored membership", func() bool {
		return strings.Contains(out2.String(), "--peers differs from the membership stored in the data directory") &&
			strings.Contains(out2.String(), want)
	})
}

// upProc is a `consensus up` process under test.
type upProc struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	done           chan struct{}
	err            error
}

// startUp runs bin up args... and kills it when the test ends.
func startUp(t *testing.T, bin string, args ...string) *upProc {
	t.Helper()
	u := &upProc{t: t, cmd: exec.Command(bin, append([]string{"up"}, args...)...),
		stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	u.cmd.Stdout, u.cmd.Stderr = u.stdout, u.stderr
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		u.err = u.cmd.Wait()
		close(u.done)
	}()
	t.Cleanup(func() {
		_ = u.cmd.Process.Kill()
		<-u.done
		if t.Failed() {
			t.Logf("up's stdout:\n%s\nup's stderr:\n%s", u.stdout, u.stderr)
		}
	})
	return u
}

// waitOutput waits until w holds want.
func (u *upProc) waitOutput(w *lockedBuffer, want string, timeout time.Duration) {
	u.t.Helper()
	testwait.For(u.t, timeout, fmt.Sprintf("up prints %q", want), func() bool { return strings.Contains(w.String(), want) })
}

// wait waits for up to exit and returns its exit code.
func (u *upProc) wait(timeout time.Duration) int {
	u.t.Helper()
	select {
	case <-u.done:
	case <-time.After(timeout):
		u.t.Fatalf("up did not exit within %s", timeout)
	}
	return u.cmd.ProcessState.ExitCode()
}

// freePorts returns the first of n consecutive free loopback ports.
func freePorts(t *testing.T, n int) int {
	t.Helper()
	base, err := loopback.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// runTryLines runs every command line up printed under "Try:" with sh,
// the binary as `consensus` on PATH and no client environment, and checks
// each worked: exit 0 and no error in what it printed.
func runTryLines(t *testing.T, bin, stdout string) {
	t.Helper()
	_, try, ok := strings.Cut(stdout, "\nTry:\n")
	if !ok {
		t.Fatalf("up printed no Try: lines:\n%s", stdout)
	}
	try, _, _ = strings.Cut(try, "\n\n")
	lines := strings.Split(try, "\n")
	if len(lines) < 6 {
		t.Fatalf("up printed %d Try: lines, want curl and consensus lines:\n%s", len(lines), try)
	}
	env := []string{"PATH=" + filepath.Dir(bin) + string(os.PathListSeparator) + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for _, line := range lines {
		line = strings.TrimSpace(line)
		cmd := exec.Command("sh", "-c", line)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		t.Logf("$ %s\n%s", line, out)
		if err != nil || strings.Contains(string(out), `"error"`) || len(out) == 0 {
			t.Errorf("%s: %v\n%s", line, err, out)
		}
		if strings.Contains(line, " kv get ") || strings.Contains(line, "curl") && strings.HasSuffix(line, "/v1/kv/workflow:demo") {
			if !strings.Contains(string(out), "running") {
				t.Errorf("%s: the value written is not in the output:\n%s", line, out)
			}
		}
	}
}

// TestUpLifecycle runs `consensus up` with tokens: the lines it prints
// work as printed, a second up on the same ports fails at once with one
// line, and a node killed with kill -9 is restarted and serves again.
func TestUpLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	peerPort, httpPort, etcdPort := freePorts(t, 3), freePorts(t, 3), freePorts(t, 3)
	tokens := filepath.Join(dir, "tokens")
	u := startUp(t, bin, "--data", filepath.Join(dir, "data"), "--token-file", tokens, "--max-watches-per-client", "100",
		"--peer-port", strconv.Itoa(peerPort), "--http-port", strconv.Itoa(httpPort), "--etcd-port", strconv.Itoa(etcdPort))
	u.waitOutput(u.stdout, "Press Ctrl-C to stop", 60*time.Second)
	runTryLines(t, bin, u.stdout.String())
	checkUpEtcd(t, u.stdout.String(), tokens, etcdPort)

	// Without the token the API refuses.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/status", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status without a token: %d, want 401", resp.StatusCode)
	}

	second := startUp(t, bin, "--data", filepath.Join(dir, "other"),
		"--peer-port", strconv.Itoa(peerPort), "--http-port", strconv.Itoa(httpPort), "--etcd-port", strconv.Itoa(etcdPort))
	if code := second.wait(30 * time.Second); code != exitFailure {
		t.Errorf("second up on the same ports: exit %d, want 1", code)
	}
	if got := second.stderr.String(); !strings.HasPrefix(got, "consensus: up: ") || strings.Count(got, "\n") != 1 ||
		!strings.Contains(got, "is in use") {
		t.Errorf("second up's stderr is not one line saying a port is in use: %q", got)
	}
	if strings.Contains(second.stdout.String(), "is up") {
		t.Errorf("second up claimed a cluster:\n%s", second.stdout)
	}

	m := regexp.MustCompile(`n2  \S+  \(peers \S+, pid (\d+)\)`).FindStringSubmatch(u.stdout.String())
	if m == nil {
		t.Fatalf("no pid for n2 in up's output:\n%s", u.stdout)
	}
	pid, _ := strconv.Atoi(m[1])
	// Its serve got up's --max-watches-per-client.
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil ||
		!strings.Contains(string(cmdline), "\x00--max-watches-per-client\x00100\x00") {
		t.Errorf("n2's command line %q (%v) lacks --max-watches-per-client 100", cmdline, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	u.waitOutput(u.stderr, "consensus: up: n2 exited (signal: killed); restarting it", 10*time.Second)
	u.waitOutput(u.stderr, "consensus: up: n2 restarted (pid ", 30*time.Second)
	out, err := exec.Command(bin, "kv", "get", "workflow:demo", "--token-file", tokens,
		"--endpoints", fmt.Sprintf("127.0.0.1:%d", httpPort+1)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "running") {
		t.Errorf("kv get on the restarted n2: %v\n%s", err, out)
	}

	if err := u.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := u.wait(30 * time.Second); code != 0 {
		t.Errorf("up stopped by SIGINT: exit %d, want 0", code)
	}
}

// TestUpAllNodesExit checks that up whose nodes all fail to start exits 1
// with each node's last log line, instead of waiting forever.
func TestUpAllNodesExit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	peerPort, httpPort := freePorts(t, 2), freePorts(t, 2)
	u := startUp(t, bin, "--nodes", "2", "--data", notDir,
		"--peer-port", strconv.Itoa(peerPort), "--http-port", strconv.Itoa(httpPort), "--etcd-port", "0")
	if code := u.wait(30 * time.Second); code != exitFailure {
		t.Fatalf("up with no node able to start: exit %d, want 1", code)
	}
	got := u.stderr.String()
	_, tail, ok := strings.Cut(got, "consensus: up: all 2 nodes exited; the last line each logged:\n")
	if !ok {
		t.Fatalf("up did not say every node exited:\n%s", got)
	}
	for _, id := range []string{"n1", "n2"} {
		if !strings.Contains(tail, "  "+id+": consensus: serve: storage: "+filepath.Join(notDir, id)) {
			t.Errorf("no last log line of %s:\n%s", id, tail)
		}
	}
	if strings.Contains(u.stdout.String(), "is up") {
		t.Errorf("up claimed a cluster:\n%s", u.stdout)
	}
}

// TestUpTLS runs `consensus up --tls --token-file` for one node: it makes
// development certificates and a token, serves HTTPS that verifies
// against them, refuses plain HTTP, prints curl and client lines that
// work as printed, and stops cleanly on SIGINT.
func TestUpTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	peerPort, httpPort := portOf(t, freeAddr(t)), portOf(t, freeAddr(t))
	u := startUp(t, bin, "--tls", "--nodes", "1", "--data", dir, "--token-file", filepath.Join(dir, "tokens"),
		"--peer-port", peerPort, "--http-port", httpPort, "--etcd-port", "0")
	u.waitOutput(u.stdout, "Press Ctrl-C to stop", 60*time.Second)
	if !strings.Contains(u.stdout.String(), "https://127.0.0.1:"+httpPort) {
		t.Errorf("up --tls does not name its HTTPS endpoint:\n%s", u.stdout)
	}
	runTryLines(t, bin, u.stdout.String())
	if resp, err := (&http.Client{Timeout: time.Second}).Get("http://127.0.0.1:" + httpPort + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP answered on the TLS port")
		}
	}
	if err := u.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := u.wait(20 * time.Second); code != 0 {
		t.Fatalf("up stopped by SIGINT: exit %d, want 0", code)
	}
}
