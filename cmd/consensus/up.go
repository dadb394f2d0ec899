package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus/internal/certs"
	"github.com/unrdf/consensus/server"
)

// Timing of `consensus up`.
const (
	// upReadyAfter is how long up waits for every node to be ready before
	// it says which are not (and keeps waiting).
	upReadyAfter = 30 * time.Second
	// upStopGrace is how long stopping nodes get before they are killed.
	upStopGrace = 10 * time.Second
	// upQuickExit is a run so short that the node's restart counts
	// against upMaxQuickRestarts; a longer run resets the count.
	upQuickExit = 10 * time.Second
	// upMaxQuickRestarts bounds restarts of a node that keeps exiting
	// soon after it starts, so a node that cannot run is not restarted
	// forever. The delay before a restart doubles with each quick exit.
	upMaxQuickRestarts = 5
	upRestartDelay     = 500 * time.Millisecond
)

// upFlags are the flags of `consensus up`.
type upFlags struct {
	nodes              int
	dataDir            string
	peerPort, httpPort int
	// etcdPort is the etcd v3 API port of the first node; 0: off.
	etcdPort  int
	logLevel  string
	tls       bool
	certDir   string
	tokenFile string
	// maxWatches is the nodes' --max-watches-per-client (0: serve's
	// default).
	maxWatches int
}

// newUpCmd is `consensus up`: a local cluster of child `consensus serve`
// processes, so each node is a real process that can be killed on its own.
func newUpCmd(stdout, stderr io.Writer) *cobra.Command {
	var f upFlags
	cmd := &cobra.Command{
		Use:   "up [flags]",
		Short: "run a local cluster of nodes",
		Long: "Run a local cluster: node k is a child `consensus serve` with peer port --peer-port+k-1,\n" +
			"HTTP port --http-port+k-1, etcd v3 API port --etcd-port+k-1 (2379 on; 0 off) and data in\n" +
			"<data>/n<k>. A node that exits after it started\n" +
			"serving is restarted. Ctrl-C stops the cluster.\n" +
			"Exit codes: 0 stopped by Ctrl-C, 1 the cluster could not start or every node exited, 2 usage error.",
		Args: exactArgs(),
		RunE: func(c *cobra.Command, _ []string) error {
			return runUp(c.Context(), f, stdout, stderr)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.IntVar(&f.nodes, "nodes", 3, "number of nodes (1 to 9)")
	fl.StringVar(&f.dataDir, "data", "data", "parent directory of the nodes' data directories")
	fl.IntVar(&f.peerPort, "peer-port", 8080, "peer port of the first node; node k uses peer-port+k-1")
	fl.IntVar(&f.httpPort, "http-port", 9080, "HTTP port of the first node; node k uses http-port+k-1")
	fl.IntVar(&f.etcdPort, "etcd-port", 2379, "etcd v3 gRPC API port of the first node (serve --etcd-listen); node k uses etcd-port+k-1; 0 turns it off")
	fl.StringVar(&f.logLevel, "log-level", "warn", "log level of the nodes")
	fl.BoolVar(&f.tls, "tls", false, "mutual TLS between peers and HTTPS for the API, with development certificates (made under --certs if missing)")
	fl.StringVar(&f.certDir, "certs", "", "directory of the development certificates for --tls (default <data>/certs)")
	fl.StringVar(&f.tokenFile, "token-file", "", "turn on bearer tokens: the nodes' token file (\"<token> <rw|ro>\" lines), made with a new rw token if missing; the client commands take the same --token-file")
	fl.IntVar(&f.maxWatches, "max-watches-per-client", 0, "the nodes' serve --max-watches-per-client (0: serve's default, 64); watches over /v1/ws share a connection, so a client")
	// No global flag applies: up's --token-file is its own (the nodes'
	// token file, which the client's --token-file reads as it is).
	return withGlobalFlags(cmd)
}

// upFailure ends up with exit code 1 and one line.
func upFailure(format string, args ...any) error {
	return failuref("up: "+format, args...)
}

// runUp starts the cluster f describes and supervises it until ctx ends,
// a signal arrives, or every node has exited.
func runUp(ctx context.Context, f upFlags, stdout, stderr io.Writer) error {
	if f.nodes < 1 || f.nodes > 9 {
		return usageErrorf("up: --nodes must be between 1 and 9")
	}
	if f.maxWatches < 0 {
		return usageErrorf("up: --max-watches-per-client must not be negative")
	}
	for _, p := range []struct {
		name string
		port int
	}{{"--peer-port", f.peerPort}, {"--http-port", f.httpPort}, {"--etcd-port", f.etcdPort}} {
		if p.name == "--etcd-port" && p.port == 0 {
			continue
		}
		if p.port < 1 || p.port+f.nodes-1 > 65535 {
			return usageErrorf("up: %s %d: the ports of %d nodes must be from 1 to 65535", p.name, p.port, f.nodes)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return upFailure("cannot find own executable: %v", err)
	}
	specs := localNodes(f.nodes, f.dataDir, func(i int) (string, string) {
		return fmt.Sprintf("127.0.0.1:%d", f.peerPort+i), fmt.Sprintf("127.0.0.1:%d", f.httpPort+i)
	})
	// Another cluster on these ports would answer our readiness checks
	// while our nodes fail; refuse at once. (The nodes bind their ports
	// before anything else and readiness is taken only from a node that
	// said it serves, so a port taken between this check and the start
	// fails that node instead.)
	for i, sp := range specs {
		addrs := []string{sp.peer, sp.http}
		if f.etcdPort != 0 {
			addrs = append(addrs, upEtcdAddr(f, i))
		}
		for _, addr := range addrs {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return upFailure("%s is in use (is another `consensus up` running? stop it, or choose other ports with --peer-port, --http-port and --etcd-port)", addr)
			}
			ln.Close()
		}
	}

	s := &upSupervisor{
		self: self, peers: peersFlag(specs), logLevel: f.logLevel,
		stdout: stdout, stderr: stderr, f: f,
		scheme: "http", probe: &http.Client{Timeout: time.Second},
		events: make(chan upEvent), quit: make(chan struct{}),
	}
	extra := map[string][]string{}
	if f.tls {
		if s.f.certDir == "" {
			s.f.certDir = filepath.Join(f.dataDir, "certs")
		}
		ids := make([]string, len(specs))
		for i, sp := range specs {
			ids[i] = sp.id
		}
		if err := ensureDevCerts(s.f.certDir, ids); err != nil {
			return upFailure("%v", err)
		}
		ca := filepath.Join(s.f.certDir, "ca.pem")
		cliTLS, err := certs.ClientConfig("", "", ca)
		if err != nil {
			return upFailure("%v", err)
		}
		s.scheme = "https"
		s.probe.Transport = &http.Transport{TLSClientConfig: cliTLS}
		for _, sp := range specs {
			cert, key := filepath.Join(s.f.certDir, sp.id+".pem"), filepath.Join(s.f.certDir, sp.id+"-key.pem")
			extra[sp.id] = []string{"--cert", cert, "--key", key,
				"--peer-cert", cert, "--peer-key", key, "--peer-ca", ca, "--api-ca", ca}
		}
	}
	if f.tokenFile != "" {
		if s.token, s.tokenFileWorks, err = ensureTokenFile(f.tokenFile); err != nil {
			return upFailure("--token-file: %v", err)
		}
		for _, sp := range specs {
			extra[sp.id] = append(extra[sp.id], "--auth-token-file", f.tokenFile)
		}
	}
	for i, sp := range specs {
		if f.etcdPort != 0 {
			extra[sp.id] = append(extra[sp.id], "--etcd-listen", upEtcdAddr(f, i))
		}
		if f.maxWatches > 0 {
			extra[sp.id] = append(extra[sp.id], "--max-watches-per-client", strconv.Itoa(f.maxWatches))
		}
		s.nodes = append(s.nodes, &upNode{localNode: sp, extra: extra[sp.id]})
	}
	return s.run(ctx)
}

// upEtcdAddr is the etcd v3 API address of node i (from 0).
func upEtcdAddr(f upFlags, i int) string {
	return fmt.Sprintf("127.0.0.1:%d", f.etcdPort+i)
}

// upSupervisor runs the nodes of `consensus up`. One goroutine (run) owns
// the nodes' state; the goroutines of each process (output copiers, its
// waiter, its readiness probe) report to it on events.
type upSupervisor struct {
	self, peers, logLevel string
	stdout, stderr        io.Writer
	f                     upFlags
	// scheme, probe and token reach the nodes' APIs.
	scheme string
	probe  *http.Client
	token  string
	// tokenFileWorks: the token file's first token is the rw token, so
	// the client commands' --token-file can take the file as it is.
	tokenFileWorks bool
	nodes          []*upNode

	// outMu keeps lines whole on stdout and stderr, and guards each
	// node's lastLine.
	outMu  sync.Mutex
	events chan upEvent
	// quit closes when run returns: reporters stop waiting to be heard.
	quit chan struct{}
	// procs counts the goroutines of the processes, so run returns
	// only after all of them.
	procs sync.WaitGroup
}

// upNodeState is where a node of up is in its life.
type upNodeState int

const (
	upRunning    upNodeState = iota // its process runs
	upRestarting                    // it exited and will be restarted
	upExited                        // it exited for good
)

// upNode is one node of up. All fields but lastLine are run's alone.
type upNode struct {
	localNode
	extra []string

	cmd        *exec.Cmd
	gone       chan struct{} // closed when cmd has exited
	state      upNodeState
	started    time.Time
	served     bool // cmd printed its "serving" line: its ports are its own
	ready      bool // cmd answered as this node, with a leader
	quickExits int
	exitErr    error

	lastLine string // the last line the node printed (under outMu)
}

type upEventKind int

const (
	upServed  upEventKind = iota // the process printed its serving line
	upReady                      // the process answered as itself, with a leader
	upExit                       // the process exited (err)
	upRestart                    // the node's restart delay is over
)

// upEvent is a report about the process cmd of node.
type upEvent struct {
	node *upNode
	cmd  *exec.Cmd
	kind upEventKind
	err  error
}

// report hands ev to run, unless run has returned.
func (s *upSupervisor) report(ev upEvent) {
	select {
	case s.events <- ev:
	case <-s.quit:
	}
}

// say prints one line to w, whole.
func (s *upSupervisor) say(w io.Writer, format string, args ...any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	fmt.Fprintf(w, format+"\n", args...)
}

// start starts n's process and the goroutines that watch it.
func (s *upSupervisor) start(n *upNode) error {
	cmd := serveCommand(s.self, n.localNode, s.peers, s.logLevel, n.extra...)
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	n.cmd, n.gone, n.state, n.started, n.served, n.ready = cmd, make(chan struct{}), upRunning, time.Now(), false, false
	gone := n.gone
	servingLine := "node " + n.id + " serving "
	var copiers sync.WaitGroup
	s.procs.Add(3)
	copiers.Add(2)
	for _, p := range []struct {
		r      io.Reader
		stdout bool
	}{{outPipe, true}, {errPipe, false}} {
		go func() {
			defer s.procs.Done()
			defer copiers.Done()
			copyLines(p.r, s.stderr, &s.outMu, n.id, func(line string) {
				n.lastLine = line
				if p.stdout && strings.HasPrefix(line, servingLine) {
					// Not while holding outMu, which run may be waiting
					// for. This copier's own counts keep both groups above
					// zero; the exit is reported after this.
					s.procs.Add(1)
					copiers.Add(1)
					go func() {
						defer s.procs.Done()
						defer copiers.Done()
						s.report(upEvent{node: n, cmd: cmd, kind: upServed})
					}()
				}
			})
		}()
	}
	go func() {
		defer s.procs.Done()
		// Wait only after the pipes are drained (os/exec's rule), so the
		// last line is known when the exit is reported.
		copiers.Wait()
		err := cmd.Wait()
		close(gone)
		s.report(upEvent{node: n, cmd: cmd, kind: upExit, err: err})
	}()
	return nil
}

// probeReady reports upReady once the node's API answers as node n, with
// a leader; it gives up when the process exits or run returns.
func (s *upSupervisor) probeReady(n *upNode, cmd *exec.Cmd, gone <-chan struct{}) {
	defer s.procs.Done()
	url := s.scheme + "://" + n.http + "/v1/status"
	for {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if s.token != "" {
			req.Header.Set("Authorization", "Bearer "+s.token)
		}
		if resp, err := s.probe.Do(req); err == nil {
			var st struct {
				NodeID   string `json:"nodeId"`
				LeaderID string `json:"leaderId"`
			}
			ok := resp.StatusCode == http.StatusOK && json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st) == nil &&
				st.NodeID == n.id && st.LeaderID != ""
			resp.Body.Close()
			if ok {
				s.report(upEvent{node: n, cmd: cmd, kind: upReady})
				return
			}
		}
		select {
		case <-gone:
			return
		case <-s.quit:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// run starts the nodes and supervises them: it announces the cluster when
// every node is ready, restarts a node that exits after it served, stops
// them all on a signal or when ctx ends, and fails when every node has
// exited.
func (s *upSupervisor) run(ctx context.Context) (err error) {
	defer func() {
		close(s.quit)
		s.procs.Wait()
		s.probe.CloseIdleConnections()
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	for i, n := range s.nodes {
		if err := s.start(n); err != nil {
			for _, started := range s.nodes[:i] {
				_ = started.cmd.Process.Kill()
			}
			return upFailure("start %s: %v", n.id, err)
		}
	}
	readyTimer := time.NewTimer(upReadyAfter)
	defer readyTimer.Stop()
	var killTimer <-chan time.Time
	announced, stopping := false, false
	done := ctx.Done()
	stop := func() {
		stopping, done, sigs = true, nil, nil
		s.say(s.stdout, "\nconsensus: stopping the cluster")
		for _, n := range s.nodes {
			switch n.state {
			case upRunning:
				_ = n.cmd.Process.Signal(syscall.SIGTERM)
			case upRestarting:
				n.state = upExited
			}
		}
		killTimer = time.After(upStopGrace)
	}
	for {
		select {
		case <-sigs:
			stop()
		case <-done:
			stop()
		case <-killTimer:
			for _, n := range s.nodes {
				if n.state == upRunning {
					_ = n.cmd.Process.Kill()
				}
			}
		case <-readyTimer.C:
			if !announced {
				s.say(s.stderr, "consensus: up: not every node is ready after %s (%s); still waiting, see their logs above", upReadyAfter, s.notReady())
			}
		case ev := <-s.events:
			n := ev.node
			if ev.cmd != n.cmd {
				break // about a process that has been replaced
			}
			switch ev.kind {
			case upServed:
				n.served = true
				if announced {
					s.say(s.stderr, "consensus: up: %s restarted (pid %d)", n.id, n.cmd.Process.Pid)
				} else {
					s.procs.Add(1)
					go s.probeReady(n, n.cmd, n.gone)
				}
			case upReady:
				n.ready = true
				if !announced && s.allReady() {
					announced = true
					s.announce()
				}
			case upExit:
				s.exited(n, ev.err, stopping)
			case upRestart:
				if n.state != upRestarting {
					break
				}
				if err := s.start(n); err != nil {
					n.state, n.exitErr = upExited, err
					s.say(s.stderr, "consensus: up: restart %s: %v", n.id, err)
				}
			}
			if s.allExited() {
				if stopping {
					return nil
				}
				s.outMu.Lock()
				fmt.Fprintf(s.stderr, "consensus: up: all %d nodes exited; the last line each logged:\n", len(s.nodes))
				for _, n := range s.nodes {
					line := n.lastLine
					if line == "" {
						line = "(nothing) " + errOrOK(n.exitErr)
					}
					fmt.Fprintf(s.stderr, "  %s: %s\n", n.id, line)
				}
				s.outMu.Unlock()
				return &exitError{code: exitFailure}
			}
		}
	}
}

// exited records that n's process ended with err, and restarts the node
// if it had started serving (unless it keeps exiting, or up is stopping).
func (s *upSupervisor) exited(n *upNode, err error, stopping bool) {
	n.exitErr = err
	s.say(s.stderr, "[%s] exited: %v", n.id, errOrOK(err))
	if stopping || !n.served {
		n.state = upExited
		return
	}
	if time.Since(n.started) < upQuickExit {
		n.quickExits++
	} else {
		n.quickExits = 0
	}
	if n.quickExits > upMaxQuickRestarts {
		n.state = upExited
		s.say(s.stderr, "consensus: up: %s exited %d times soon after starting; not restarting it", n.id, n.quickExits)
		return
	}
	n.state = upRestarting
	delay := upRestartDelay << max(n.quickExits-1, 0)
	s.say(s.stderr, "consensus: up: %s exited (%v); restarting it in %s", n.id, errOrOK(err), delay)
	cmd := n.cmd
	time.AfterFunc(delay, func() { s.report(upEvent{node: n, cmd: cmd, kind: upRestart}) })
}

func (s *upSupervisor) allReady() bool {
	for _, n := range s.nodes {
		if !n.ready {
			return false
		}
	}
	return true
}

func (s *upSupervisor) allExited() bool {
	for _, n := range s.nodes {
		if n.state != upExited {
			return false
		}
	}
	return true
}

// notReady says which nodes are not ready and why.
func (s *upSupervisor) notReady() string {
	var list []string
	for _, n := range s.nodes {
		switch {
		case n.ready:
		case n.state != upRunning:
			list = append(list, n.id+": exited")
		case !n.served:
			list = append(list, n.id+": not serving yet")
		default:
			list = append(list, n.id+": no leader yet")
		}
	}
	return strings.Join(list, "; ")
}

// announce prints the cluster and lines that work against it.
func (s *upSupervisor) announce() {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	w, f := s.stdout, s.f
	first, last := s.nodes[0], s.nodes[len(s.nodes)-1]
	fmt.Fprintf(w, "consensus: %d-node cluster is up (data under %s/)\n", len(s.nodes), f.dataDir)
	for _, n := range s.nodes {
		fmt.Fprintf(w, "  %s  %s://%s  (peers %s, pid %d)\n", n.id, s.scheme, n.http, n.peer, n.cmd.Process.Pid)
	}
	curl := "curl -s"
	cli := "consensus"
	if f.tls {
		ca := shellQuote(filepath.Join(f.certDir, "ca.pem"))
		curl += " --cacert " + ca
		cli += " --cacert " + ca
		fmt.Fprintf(w, "\nPeers use mutual TLS; the API is HTTPS with certificates from %s/.\n", f.certDir)
	}
	if s.token != "" {
		curl += " -H " + shellQuote("Authorization: Bearer "+s.token)
		if s.tokenFileWorks {
			cli += " --token-file " + shellQuote(f.tokenFile)
		} else {
			cli += " --token " + shellQuote(s.token)
		}
		fmt.Fprintf(w, "\nThe API needs a bearer token from %s (a read-only one can read).\n", f.tokenFile)
	}
	endpoints := make([]string, len(s.nodes))
	for i, n := range s.nodes {
		endpoints[i] = n.http
		if f.tls {
			endpoints[i] = "https://" + n.http
		}
	}
	if list := strings.Join(endpoints, ","); list != defaultEndpoints {
		cli += " --endpoints " + list
	}
	fmt.Fprintf(w, "\nTry:\n  %s -X PUT %s://%s/v1/kv/workflow:demo -d '{\"status\":\"running\"}'\n", curl, s.scheme, first.http)
	fmt.Fprintf(w, "  %s %s://%s/v1/kv/workflow:demo\n", curl, s.scheme, last.http)
	fmt.Fprintf(w, "  %s %s://%s/v1/status\n", curl, s.scheme, first.http)
	fmt.Fprintf(w, "  %s status\n", cli)
	fmt.Fprintf(w, "  %s kv put workflow:demo '{\"status\":\"running\"}'\n", cli)
	fmt.Fprintf(w, "  %s kv get workflow:demo\n", cli)
	fmt.Fprintf(w, "\nDashboard: %s://%s/\n", s.scheme, first.http)
	if f.etcdPort != 0 {
		eps := make([]string, len(s.nodes))
		for i := range s.nodes {
			eps[i] = upEtcdAddr(f, i)
		}
		fmt.Fprintf(w, "etcd v3 API (etcdctl --endpoints, clientv3; docs/ETCD.md): %s\n", strings.Join(eps, ","))
	}
	fmt.Fprintf(w, "\nA node that exits (try kill -9 on a pid above) is restarted. Press Ctrl-C to stop the cluster.\n")
}

// shellQuote quotes s for a POSIX shell unless it needs no quoting.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=,@%+-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ensureTokenFile returns the first rw token of the token file at path,
// first writing the file with a new random rw token if there is none. works
// says whether that token is also the file's first token, the one the
// client commands' --token-file reads.
func ensureTokenFile(path string) (token string, works bool, err error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		var b [16]byte
		if _, err := crand.Read(b[:]); err != nil {
			return "", false, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return "", false, err
		}
		content := "# bearer tokens of `consensus up`: \"<token> <rw|ro>\" per line\n" + hex.EncodeToString(b[:]) + " rw\n"
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return "", false, err
		}
	}
	if token, err = server.FirstToken(path, server.RoleReadWrite); err != nil {
		return "", false, err
	}
	first, err := readToken(path)
	return token, err == nil && first == token, nil
}

// ensureDevCerts makes development certificates for ids in dir unless
// they are all there already.
func ensureDevCerts(dir string, ids []string) error {
	missing := false
	for _, f := range append([]string{"ca"}, ids...) {
		if _, err := os.Stat(filepath.Join(dir, f+".pem")); err != nil {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.pem")); err == nil {
		return fmt.Errorf("%s has a CA but not a certificate for every node; remove it to make new ones", dir)
	}
	return certs.WriteDev(dir, ids)
}

func errOrOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
