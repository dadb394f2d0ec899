package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/bench"
	"github.com/unrdf/consensus/client"
	"github.com/unrdf/consensus/internal/loopback"
	"github.com/unrdf/consensus/kv"
)

const benchLong = `Measures a cluster: each workload at each concurrency for --duration (after
an unmeasured --warmup), printing ops/s, latency percentiles and errors per
cell. Without --endpoints it starts a local cluster of child serve processes
in a temporary directory and stops it at the end. Only loopback addresses.

Modes other than workloads (they need a cluster bench started):
  --failover N    kill -9 the leader N times; time until a write succeeds
  --fill-keys N   write N keys, then report each node's memory (RSS)`

// benchConfig is a parsed bench command line.
type benchConfig struct {
	opts      bench.Options
	endpoints []string // HTTP addresses of a running cluster; empty: start one
	protocol  string
	json      bool
	failover  int
	// restartDelay is how long a killed leader stays down.
	restartDelay time.Duration
	fillKeys     int
	nodes        int
	dataDir      string
	keepData     bool
	logLevel     string
	// cpu reports CPU time per operation for each cell (bench.ProcCPU) of
	// the local cluster's nodes, or of cpuPids, and of bench itself.
	cpu     bool
	cpuPids map[string]int
	// target is how to reach endpoints: token and TLS (the global flags).
	target benchTarget
}

// benchTarget is how bench reaches a cluster given by --endpoints: a
// bearer token and, for HTTPS, a TLS configuration. The zero value is
// plain HTTP without a token, as for the local cluster bench starts.
type benchTarget struct {
	token string
	tls   *tls.Config
}

// benchGlobalFlags are the client commands' global flags bench takes, for
// a cluster given by --endpoints.
var benchGlobalFlags = []string{"token", "token-file", "cacert", "cert", "key"}

// url is the URL of path on the node at addr (host:port).
func (t benchTarget) url(addr, path string) string {
	if t.tls != nil {
		return "https://" + addr + path
	}
	return "http://" + addr + path
}

// transport is an HTTP transport to the target, keeping up to conc idle
// connections.
func (t benchTarget) transport(conc int) *http.Transport {
	return &http.Transport{
		MaxIdleConns:        conc,
		MaxIdleConnsPerHost: conc,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSClientConfig:     t.tls,
	}
}

// authorize adds the target's token to req.
func (t benchTarget) authorize(req *http.Request) {
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
}

// benchFlags are bench's flags as given; config checks them.
type benchFlags struct {
	cfg       benchConfig
	endpoints string
	cpuPids   string
}

// newBenchFlags declares bench's flags on fs, with their defaults.
func newBenchFlags(fs *pflag.FlagSet) *benchFlags {
	f := &benchFlags{cfg: benchConfig{opts: bench.DefaultOptions()}}
	cfg := &f.cfg
	// The workload options are the bench package's, declared on a Go
	// flag.FlagSet; pflag takes them as they are (--duration 2s).
	workload := flag.NewFlagSet("bench", flag.ContinueOnError)
	cfg.opts.Register(workload)
	fs.AddGoFlagSet(workload)
	fs.StringVar(&f.endpoints, "endpoints", "", "HTTP addresses (host:port,...) of a running cluster; default: start a local cluster")
	fs.StringVar(&cfg.protocol, "protocol", "ws", "ws (the Go client over /v1/ws) or http (JSON over HTTP/1.1 keep-alive, one connection per in-flight request)")
	fs.BoolVar(&cfg.json, "json", false, "print one JSON report on stdout instead of a table")
	fs.IntVar(&cfg.failover, "failover", 0, "instead of workloads, kill -9 the leader `N` times and time until a write succeeds")
	fs.DurationVar(&cfg.restartDelay, "restart-delay", 0, "with --failover: how long a killed leader stays down before it is restarted")
	fs.IntVar(&cfg.fillKeys, "fill-keys", 0, "instead of workloads, write `N` keys of --value-size bytes and report each node's RSS")
	fs.IntVar(&cfg.nodes, "nodes", 3, "nodes of the local cluster")
	fs.StringVar(&cfg.dataDir, "data", "", "parent directory of the local cluster's data (default: a new temporary directory, removed at the end)")
	fs.BoolVar(&cfg.keepData, "keep-data", false, "keep the local cluster's data directory")
	fs.StringVar(&cfg.logLevel, "log-level", "warn", "log level of the local cluster's nodes (logs go to <data>/<id>.log)")
	fs.BoolVar(&cfg.cpu, "cpu", false, "also report, per cell, the CPU time per operation of each node and of this load generator (Linux; with --endpoints, of the processes in --cpu-pids)")
	fs.StringVar(&f.cpuPids, "cpu-pids", "", "with --cpu: `name=pid,...` of the measured processes (default: the nodes bench starts)")
	return f
}

// config checks the flags and returns the run they describe; its errors
// are usage errors, "bench: ...".
func (f *benchFlags) config() (benchConfig, error) {
	cfg := f.cfg
	fail := func(format string, a ...any) (benchConfig, error) {
		return cfg, usageErrorf("bench: "+format, a...)
	}
	if f.cpuPids != "" {
		pids, err := bench.ParsePids(f.cpuPids)
		if err != nil {
			return fail("--cpu-pids: %v", err)
		}
		cfg.cpuPids, cfg.cpu = pids, true
	}
	if err := cfg.opts.Validate(); err != nil {
		return fail("%v", err)
	}
	if cfg.protocol != "ws" && cfg.protocol != "http" {
		return fail("--protocol: %q is not ws or http", cfg.protocol)
	}
	if f.endpoints != "" {
		for _, e := range strings.Split(f.endpoints, ",") {
			addr, err := loopbackAddr(strings.TrimSpace(e), cfg.target.tls != nil)
			if err != nil {
				return fail("--endpoints: %v", err)
			}
			cfg.endpoints = append(cfg.endpoints, addr)
		}
	} else if cfg.target != (benchTarget{}) {
		return fail("--token, --token-file, --cacert, --cert and --key are for a cluster given by --endpoints")
	}
	switch {
	case cfg.failover < 0 || cfg.failover > 1000:
		return fail("--failover: %d is not between 0 and 1000", cfg.failover)
	case cfg.fillKeys < 0 || cfg.fillKeys > 10_000_000:
		return fail("--fill-keys: %d is not between 0 and 10000000", cfg.fillKeys)
	case cfg.failover > 0 && cfg.fillKeys > 0:
		return fail("--failover and --fill-keys are separate runs")
	case (cfg.failover > 0 || cfg.fillKeys > 0) && len(cfg.endpoints) > 0:
		return fail("--failover and --fill-keys need processes bench starts itself: drop --endpoints")
	case cfg.nodes < 1 || cfg.nodes > 9:
		return fail("--nodes: %d is not between 1 and 9", cfg.nodes)
	case cfg.restartDelay < 0 || cfg.restartDelay > time.Minute:
		return fail("--restart-delay: %v is not between 0 and 1m", cfg.restartDelay)
	case cfg.failover > 0 && cfg.nodes < 3:
		return fail("--failover needs at least 3 nodes")
	}
	if _, err := newLogger(io.Discard, cfg.logLevel, "text"); err != nil {
		return fail("%v", err)
	}
	return cfg, nil
}

// loopbackAddr turns an endpoint ("host:port", "http://host:port", or with
// https "https://host:port") into host:port, refusing any host that is not
// a loopback address: the benchmark only ever loads this machine.
func loopbackAddr(endpoint string, https bool) (string, error) {
	hostport := endpoint
	if strings.Contains(endpoint, "://") {
		scheme := "http"
		if https {
			scheme = "https"
		}
		u, err := url.Parse(endpoint)
		if err != nil || u.Scheme != scheme || u.Host == "" {
			return "", fmt.Errorf("%q is not host:port or %s://host:port (https needs --cacert or --cert)", endpoint, scheme)
		}
		hostport = u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || port == "" {
		return "", fmt.Errorf("%q is not host:port", endpoint)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", fmt.Errorf("%q is not a loopback address", endpoint)
	}
	return hostport, nil
}

// benchReport is the JSON document of `consensus bench --json`.
type benchReport struct {
	bench.Report
	Failover *failoverReport `json:"failover,omitempty"`
	Memory   []nodeMemory    `json:"memory,omitempty"`
}

// benchCmd is `consensus bench`.
func (c *cli) benchCmd() *cobra.Command {
	var flags *benchFlags
	cmd := &cobra.Command{
		Use:   "bench [flags]",
		Short: "measure a cluster: throughput, latency, failover",
		Long:  benchLong,
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			target, err := c.benchTarget(cmd)
			if err != nil {
				return prefixUsage("bench", err)
			}
			flags.cfg.target = target
			cfg, err := flags.config()
			if err != nil {
				return err
			}
			return runBench(cmd.Context(), cfg, c.stdout)
		},
	}
	flags = newBenchFlags(cmd.Flags())
	return withGlobalFlags(cmd, benchGlobalFlags...)
}

// benchTarget is the token and TLS configuration the global flags ask
// for. The token comes from --token, --token-file or $CONSENSUS_TOKEN,
// the last only with --endpoints (a local cluster has no tokens).
func (c *cli) benchTarget(cmd *cobra.Command) (benchTarget, error) {
	var t benchTarget
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return t, err
	}
	t.tls = tlsCfg
	switch {
	case c.tokenFlag != "":
		t.token = c.tokenFlag
	case c.tokenFile != "":
		if t.token, err = readToken(c.tokenFile); err != nil {
			return t, usageErrorf("--token-file: %v", err)
		}
	case cmd.Flags().Changed("endpoints"):
		t.token = os.Getenv(envToken)
	}
	return t, nil
}

// runBench runs the measurement cfg describes.
func runBench(ctx context.Context, cfg benchConfig, stdout io.Writer) (err error) {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	text := io.Discard
	if !cfg.json {
		text = stdout
	}
	var lc *benchCluster
	endpoints := cfg.endpoints
	if len(endpoints) == 0 {
		lc, err = startBenchCluster(ctx, cfg, text)
		if lc != nil {
			defer func() {
				if closeErr := lc.close(); closeErr != nil && err == nil {
					err = failuref("bench: %v", closeErr)
				}
			}()
		}
		if err != nil {
			return failuref("bench: %v", err)
		}
		endpoints = lc.addrs()
	}

	report := benchReport{Report: bench.Report{System: "consensus", Version: version}}
	switch {
	case cfg.failover > 0:
		report.Failover, err = runFailover(ctx, lc, cfg.failover, cfg.restartDelay, text)
	case cfg.fillKeys > 0:
		report.Memory, err = runFill(ctx, lc, cfg, text)
	default:
		report.Results, err = runWorkloads(ctx, cfg, lc, endpoints, stdout, text)
	}
	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if encErr := enc.Encode(report); encErr != nil {
			return failuref("bench: %v", encErr)
		}
	}
	if err != nil {
		return failuref("bench: %v", err)
	}
	return nil
}

// runWorkloads measures every cell against endpoints, leader first. lc is
// the local cluster, nil for --endpoints.
func runWorkloads(ctx context.Context, cfg benchConfig, lc *benchCluster, endpoints []string, stdout, text io.Writer) ([]bench.Result, error) {
	endpoints, leader, err := leaderFirst(ctx, cfg.target, endpoints)
	if err != nil {
		return nil, err
	}
	driver, closeDriver, err := newDriver(cfg.protocol, cfg.target, endpoints, slices.Max(cfg.opts.Concurrency))
	if err != nil {
		return nil, err
	}
	defer closeDriver()

	o := cfg.opts
	switch {
	case cfg.cpuPids != nil:
		o.CPU = bench.PidMeter(cfg.cpuPids)
	case cfg.cpu:
		o.CPU = lc.cpuMeter()
	}
	fmt.Fprintf(text, "target %s (leader %s), protocol %s, %d B values, %d keys, %v warm-up + %v per cell\n\n",
		endpoints[0], leader, cfg.protocol, o.ValueSize, o.Keys, o.Warmup, o.Duration)
	bench.WriteHeader(text)
	var progress func(bench.Progress)
	clear := func() {}
	if f, ok := stdout.(*os.File); ok && !cfg.json && bench.IsTerminal(f) {
		progress, clear = bench.ProgressLine(f)
	}
	return bench.Suite(ctx, driver, o, "consensus", cfg.protocol, progress, func(r bench.Result) {
		clear()
		bench.WriteRow(text, r)
	})
}

// newDriver returns the driver of protocol against endpoints (the first is
// used; ws fails over to the others), sized for conc clients.
func newDriver(protocol string, target benchTarget, endpoints []string, conc int) (bench.Driver, func(), error) {
	if protocol == "http" {
		tr := target.transport(conc)
		d := &httpDriver{hc: &http.Client{Transport: tr}, base: target.url(endpoints[0], "/v1/kv/"), target: target}
		return d, tr.CloseIdleConnections, nil
	}
	cfg := client.Config{Token: target.token}
	for _, ep := range endpoints {
		cfg.Endpoints = append(cfg.Endpoints, target.url(ep, ""))
	}
	var tr *http.Transport
	if target.tls != nil {
		tr = target.transport(1)
		cfg.HTTPClient = &http.Client{Transport: tr}
	}
	c, err := client.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	return wsDriver{c}, func() {
		_ = c.Close()
		if tr != nil {
			tr.CloseIdleConnections()
		}
	}, nil
}

// wsDriver drives the Go client over /v1/ws: one multiplexed connection
// shared by every worker.
type wsDriver struct{ c *client.Client }

func (d wsDriver) Put(ctx context.Context, key string, value []byte) error {
	_, err := d.c.Put(ctx, key, value)
	return err
}

func (d wsDriver) Get(ctx context.Context, key string, linearizable bool) error {
	if linearizable {
		_, err := d.c.Get(ctx, key)
		return err
	}
	_, err := d.c.Get(ctx, key, client.WithConsistency(kv.Local))
	return err
}

// httpDriver drives the JSON API over HTTP/1.1 with keep-alive: each
// in-flight request holds its own connection.
type httpDriver struct {
	hc     *http.Client
	base   string // http://host:port/v1/kv/ (or https)
	target benchTarget
}

func (d *httpDriver) Put(ctx context.Context, key string, value []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, d.base+key, bytes.NewReader(value))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return d.do(req)
}

func (d *httpDriver) Get(ctx context.Context, key string, linearizable bool) error {
	u := d.base + key
	if !linearizable {
		u += "?consistency=local"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	return d.do(req)
}

func (d *httpDriver) do(req *http.Request) error {
	d.target.authorize(req)
	resp, err := d.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(body))
}

// statusClient fetches /v1/status; short timeouts, as it polls.
var statusClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableCompression: true}}

// fetchStatus asks a node of the local cluster for its status.
func fetchStatus(ctx context.Context, addr string) (consensus.Status, error) {
	return fetchStatusOf(ctx, statusClient, benchTarget{}, addr)
}

// fetchStatusOf asks the node at addr for its status, through hc.
func fetchStatusOf(ctx context.Context, hc *http.Client, target benchTarget, addr string) (consensus.Status, error) {
	var st consensus.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.url(addr, "/v1/status"), nil)
	if err != nil {
		return st, err
	}
	target.authorize(req)
	resp, err := hc.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		if client.IsHTTPSAnswer(resp.StatusCode, body) {
			return st, &refusedError{status: resp.StatusCode, https: true}
		}
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(body, &eb)
		return st, fmt.Errorf("status of %s: %w", addr, &refusedError{status: resp.StatusCode, code: eb.Error.Code, message: eb.Error.Message})
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st)
	return st, err
}

// leaderFirst returns endpoints with the leader's first, and its name, so
// that the measurement is of the leader and not of follower forwarding.
// It waits up to 30 seconds for a leader.
func leaderFirst(ctx context.Context, target benchTarget, endpoints []string) ([]string, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hc := statusClient
	if target.tls != nil {
		tr := target.transport(1)
		defer tr.CloseIdleConnections()
		hc = &http.Client{Timeout: time.Second, Transport: tr}
	}
	var last error
	for {
		for i, ep := range endpoints {
			st, err := fetchStatusOf(ctx, hc, target, ep)
			var refused *refusedError
			if errors.As(err, &refused) && refused.final() {
				return nil, "", err // every member would say the same
			}
			if err != nil && ctx.Err() == nil {
				last = err
			}
			if err == nil && st.IsLeader {
				out := append([]string{ep}, endpoints[:i]...)
				return append(out, endpoints[i+1:]...), st.NodeID, nil
			}
		}
		if err := sleepOrDone(ctx, 50*time.Millisecond); err != nil {
			if last != nil {
				err = fmt.Errorf("%w (last: %w)", err, last)
			}
			return nil, "", fmt.Errorf("no leader among %s: %w", strings.Join(endpoints, ","), err)
		}
	}
}

func sleepOrDone(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// benchCluster is a local cluster of child serve processes that bench
// started, so it may kill and restart them.
type benchCluster struct {
	self     string
	dir      string
	ownDir   bool // dir was created by bench and is removed at the end
	keepData bool
	logLevel string
	nodes    []localNode
	peers    string

	mu    sync.Mutex
	procs []*exec.Cmd
	done  []chan struct{} // closed when the process has been reaped
}

func startBenchCluster(ctx context.Context, cfg benchConfig, text io.Writer) (*benchCluster, error) {
	lc, err := newBenchCluster(cfg)
	if err != nil {
		return lc, err
	}
	for i := range lc.nodes {
		if err := lc.start(i); err != nil {
			return lc, err
		}
	}
	if err := lc.waitStable(ctx, 30*time.Second); err != nil {
		return lc, err
	}
	fmt.Fprintf(text, "consensus bench: local %d-node cluster, data and logs in %s\n", len(lc.nodes), lc.dir)
	return lc, nil
}

// newBenchCluster lays out cfg.nodes nodes on free loopback ports with
// their data under cfg.dataDir (a new temporary directory if empty),
// without starting them. On an error the returned cluster, if not nil,
// still needs close.
func newBenchCluster(cfg benchConfig) (*benchCluster, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("cannot find own executable: %w", err)
	}
	lc := &benchCluster{self: self, dir: cfg.dataDir, keepData: cfg.keepData, logLevel: cfg.logLevel}
	if lc.dir == "" {
		if lc.dir, err = os.MkdirTemp("", "consensus-bench-"); err != nil {
			return nil, err
		}
		lc.ownDir = true
	} else if err := os.MkdirAll(lc.dir, 0o700); err != nil {
		return nil, err
	}
	var addrErr error
	lc.nodes = localNodes(cfg.nodes, lc.dir, func(int) (string, string) {
		peer, err1 := loopback.FreeAddr()
		http, err2 := loopback.FreeAddr()
		addrErr = errors.Join(addrErr, err1, err2)
		return peer, http
	})
	if addrErr != nil {
		return lc, addrErr
	}
	lc.peers = peersFlag(lc.nodes)
	lc.procs = make([]*exec.Cmd, len(lc.nodes))
	lc.done = make([]chan struct{}, len(lc.nodes))
	return lc, nil
}

func (lc *benchCluster) addrs() []string {
	out := make([]string, len(lc.nodes))
	for i, n := range lc.nodes {
		out[i] = n.http
	}
	return out
}

// start starts node i, its output appended to <dir>/<id>.log.
func (lc *benchCluster) start(i int) error {
	n := lc.nodes[i]
	log, err := os.OpenFile(filepath.Join(lc.dir, n.id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := serveCommand(lc.self, n, lc.peers, lc.logLevel)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", n.id, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(done)
	}()
	lc.mu.Lock()
	lc.procs[i], lc.done[i] = cmd, done
	lc.mu.Unlock()
	return nil
}

// kill sends SIGKILL to node i and waits until it is reaped.
func (lc *benchCluster) kill(i int) {
	lc.mu.Lock()
	cmd, done := lc.procs[i], lc.done[i]
	lc.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// cpuMeter reads the CPU time of every running node of lc (none if lc is
// nil) and of this process.
func (lc *benchCluster) cpuMeter() bench.CPUMeter {
	return func() (map[string]time.Duration, error) {
		pids := make(map[string]int)
		if lc != nil {
			for i, n := range lc.nodes {
				if pid := lc.pid(i); pid != 0 {
					pids[n.id] = pid
				}
			}
		}
		return bench.PidMeter(pids)()
	}
}

func (lc *benchCluster) pid(i int) int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.procs[i] == nil {
		return 0
	}
	return lc.procs[i].Process.Pid
}

// close stops every node (SIGTERM, then SIGKILL after ten seconds) and
// removes the data directory if bench created it.
func (lc *benchCluster) close() error {
	lc.mu.Lock()
	procs, done := slices.Clone(lc.procs), slices.Clone(lc.done)
	lc.mu.Unlock()
	for _, cmd := range procs {
		if cmd != nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(10 * time.Second)
	for i, d := range done {
		if d == nil {
			continue
		}
		select {
		case <-d:
		case <-deadline:
			_ = procs[i].Process.Kill()
			<-d
		}
	}
	if lc.ownDir && !lc.keepData {
		return os.RemoveAll(lc.dir)
	}
	return nil
}

// waitStable waits until every node in live (all when nil) is ready,
// agrees on one leader among them, and has a stream to every other.
func (lc *benchCluster) waitStable(ctx context.Context, timeout time.Duration, live ...int) error {
	if live == nil {
		for i := range lc.nodes {
			live = append(live, i)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if lc.stable(ctx, live) {
			return nil
		}
		if err := sleepOrDone(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("cluster not stable after %v (logs in %s): %w", timeout, lc.dir, err)
		}
	}
}

func (lc *benchCluster) stable(ctx context.Context, live []int) bool {
	leader := ""
	for _, i := range live {
		st, err := fetchStatus(ctx, lc.nodes[i].http)
		if err != nil || st.LeaderID == "" || (leader != "" && st.LeaderID != leader) {
			return false
		}
		leader = st.LeaderID
		for _, j := range live {
			if j != i && !slices.Contains(st.ConnectedPeers, lc.nodes[j].id) {
				return false
			}
		}
	}
	return slices.ContainsFunc(live, func(i int) bool { return lc.nodes[i].id == leader })
}

// leader returns the index of the node that says it leads, or -1.
func (lc *benchCluster) leader(ctx context.Context) (int, consensus.Status) {
	for i, n := range lc.nodes {
		if st, err := fetchStatus(ctx, n.http); err == nil && st.IsLeader {
			return i, st
		}
	}
	return -1, consensus.Status{}
}

// failoverRun is one kill of the leader.
type failoverRun struct {
	Killed    string `json:"killed"`
	NewLeader string `json:"newLeader"`
	// WriteAfter is the time from the kill to the first acknowledged
	// write through a surviving node.
	WriteAfter time.Duration `json:"writeAfterNs"`
	// Attempts counts the writes tried until then.
	Attempts int `json:"attempts"`
	// CatchUp is the time from restarting the killed node until it has
	// applied everything the leader had committed (the last restart's,
	// when Restarts > 0).
	CatchUp time.Duration `json:"catchUpNs"`
	// Restarts counts the extra kill and restart cycles needed because
	// the restarted node had not caught up within catchUpBound.
	Restarts int `json:"restarts"`
}

// failoverReport is the distribution of WriteAfter over the runs.
type failoverReport struct {
	Runs []failoverRun `json:"runs"`
	Min  time.Duration `json:"minNs"`
	P50  time.Duration `json:"p50Ns"`
	P90  time.Duration `json:"p90Ns"`
	Max  time.Duration `json:"maxNs"`
}

func summariseFailover(runs []failoverRun) *failoverReport {
	r := &failoverReport{Runs: runs}
	samples := make([]time.Duration, len(runs))
	for i, run := range runs {
		samples[i] = run.WriteAfter
	}
	if len(samples) > 0 {
		l := bench.Summarise(samples)
		r.Min, r.P50, r.P90, r.Max = samples[0], l.P50, l.P90, l.Max
	}
	return r
}

// Failover probing: a new write every failoverProbeEvery, each bounded by
// failoverProbeTimeout (a write forwarded to the dead leader hangs until
// then), at most failoverMaxInFlight at once, for at most failoverBound.
const (
	failoverProbeEvery   = 2 * time.Millisecond
	failoverProbeTimeout = 500 * time.Millisecond
	failoverMaxInFlight  = 256
	failoverBound        = 30 * time.Second
)

func runFailover(ctx context.Context, lc *benchCluster, n int, restartDelay time.Duration, text io.Writer) (*failoverReport, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: failoverMaxInFlight, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	fmt.Fprintf(text, "failover: %d runs; kill -9 the leader, time until a write through a survivor succeeds\n\n", n)
	fmt.Fprintf(text, "%-4s %-7s %-10s %12s %9s %12s %9s\n", "run", "killed", "new leader", "write after", "attempts", "catch-up", "restarts")
	var runs []failoverRun
	for k := range n {
		if err := lc.waitStable(ctx, 30*time.Second); err != nil {
			return summariseFailover(runs), err
		}
		run, err := failoverOnce(ctx, lc, hc, k, restartDelay)
		if err != nil {
			return summariseFailover(runs), fmt.Errorf("failover run %d: %w", k+1, err)
		}
		runs = append(runs, run)
		fmt.Fprintf(text, "%-4d %-7s %-10s %12s %9d %12s %9d\n", k+1, run.Killed, run.NewLeader,
			bench.FormatDuration(run.WriteAfter), run.Attempts, bench.FormatDuration(run.CatchUp), run.Restarts)
	}
	r := summariseFailover(runs)
	fmt.Fprintf(text, "\nwrite after kill: min %s  p50 %s  p90 %s  max %s  (%d runs)\n",
		bench.FormatDuration(r.Min), bench.FormatDuration(r.P50), bench.FormatDuration(r.P90),
		bench.FormatDuration(r.Max), len(runs))
	return r, nil
}

// catchUpBound bounds the wait for a restarted node to catch up;
// maxRestarts bounds the extra kills and restarts of one that does not.
const (
	catchUpBound = 10 * time.Second
	maxRestarts  = 3
)

func failoverOnce(ctx context.Context, lc *benchCluster, hc *http.Client, k int, restartDelay time.Duration) (failoverRun, error) {
	li, _ := lc.leader(ctx)
	if li < 0 {
		return failoverRun{}, errors.New("no leader")
	}
	var survivors []int
	for i := range lc.nodes {
		if i != li {
			survivors = append(survivors, i)
			// Open a connection to each survivor before the kill.
			if _, err := fetchStatus(ctx, lc.nodes[i].http); err != nil {
				return failoverRun{}, err
			}
		}
	}
	run := failoverRun{Killed: lc.nodes[li].id}

	killedAt := time.Now()
	lc.kill(li)
	writeAfter, attempts, err := probeWrites(ctx, lc, hc, survivors, killedAt, fmt.Sprintf("failover/%d", k))
	run.WriteAfter, run.Attempts = writeAfter, attempts
	if err != nil {
		return run, err
	}
	if ni, _ := lc.leader(ctx); ni >= 0 {
		run.NewLeader = lc.nodes[ni].id
	}

	if err := sleepOrDone(ctx, restartDelay); err != nil {
		return run, err
	}
	restartedAt := time.Now()
	if err := lc.start(li); err != nil {
		return run, err
	}
	for lc.waitCaughtUp(ctx, li, catchUpBound) != nil {
		// A node that does not catch up is a finding, reported as such;
		// a second kill and restart lets the remaining runs go on.
		if err := ctx.Err(); err != nil || run.Restarts >= maxRestarts {
			return run, fmt.Errorf("%s did not catch up within %v after %d restarts (logs in %s)", lc.nodes[li].id, catchUpBound, run.Restarts+1, lc.dir)
		}
		run.Restarts++
		lc.kill(li)
		if err := sleepOrDone(ctx, time.Second); err != nil {
			return run, err
		}
		if err := lc.start(li); err != nil {
			return run, err
		}
	}
	run.CatchUp = time.Since(restartedAt)
	return run, nil
}

// probeWrites starts a write every failoverProbeEvery, round robin over
// survivors, until one is acknowledged; it returns the time from killedAt
// to that acknowledgement and the writes tried.
func probeWrites(ctx context.Context, lc *benchCluster, hc *http.Client, survivors []int, killedAt time.Time, key string) (time.Duration, int, error) {
	ctx, cancel := context.WithTimeout(ctx, failoverBound)
	defer cancel()
	var (
		wg       sync.WaitGroup
		inFlight atomic.Int64
		doneOnce sync.Once
		ackedAt  time.Time
	)
	acked := make(chan struct{})
	value := []byte(`"failover"`)
	tick := time.NewTicker(failoverProbeEvery)
	defer tick.Stop()
	attempts := 0
loop:
	for {
		if inFlight.Load() < failoverMaxInFlight {
			addr := lc.nodes[survivors[attempts%len(survivors)]].http
			attempts++
			inFlight.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer inFlight.Add(-1)
				pctx, pcancel := context.WithTimeout(ctx, failoverProbeTimeout)
				defer pcancel()
				req, err := http.NewRequestWithContext(pctx, http.MethodPut, "http://"+addr+"/v1/kv/"+key, bytes.NewReader(value))
				if err != nil {
					return
				}
				resp, err := hc.Do(req)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					now := time.Now()
					doneOnce.Do(func() { ackedAt = now; close(acked) })
				}
			}()
		}
		select {
		case <-acked:
			break loop
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
	}
	cancel()
	wg.Wait()
	select {
	case <-acked:
		return ackedAt.Sub(killedAt), attempts, nil
	default:
		return 0, attempts, fmt.Errorf("no write acknowledged within %v", failoverBound)
	}
}

// waitCaughtUp waits until node i is ready and has applied what the
// leader had committed when it was asked.
func (lc *benchCluster) waitCaughtUp(ctx context.Context, i int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		li, lst := lc.leader(ctx)
		if li >= 0 {
			if st, err := fetchStatus(ctx, lc.nodes[i].http); err == nil && st.LeaderID != "" && st.AppliedIndex >= lst.CommitIndex {
				return nil
			}
		}
		if err := sleepOrDone(ctx, 10*time.Millisecond); err != nil {
			return fmt.Errorf("%s did not catch up within %v: %w", lc.nodes[i].id, timeout, err)
		}
	}
}

// nodeMemory is one node's memory after a fill.
type nodeMemory struct {
	Node      string `json:"node"`
	Keys      int    `json:"keys"`
	ValueSize int    `json:"valueSize"`
	// RSS before and after the fill, and the peak, from /proc/<pid>/status
	// (VmRSS, VmHWM), in bytes.
	RSSBefore int64 `json:"rssBeforeBytes"`
	RSSAfter  int64 `json:"rssAfterBytes"`
	HWM       int64 `json:"hwmBytes"`
	// DataBytes is the size of the node's data directory.
	DataBytes int64 `json:"dataBytes"`
}

func runFill(ctx context.Context, lc *benchCluster, cfg benchConfig, text io.Writer) ([]nodeMemory, error) {
	mem := make([]nodeMemory, len(lc.nodes))
	for i, n := range lc.nodes {
		rss, _, err := procMemory(lc.pid(i))
		if err != nil {
			return nil, err
		}
		mem[i] = nodeMemory{Node: n.id, Keys: cfg.fillKeys, ValueSize: cfg.opts.ValueSize, RSSBefore: rss}
	}
	endpoints, _, err := leaderFirst(ctx, benchTarget{}, lc.addrs())
	if err != nil {
		return nil, err
	}
	driver, closeDriver, err := newDriver(cfg.protocol, benchTarget{}, endpoints, 64)
	if err != nil {
		return nil, err
	}
	defer closeDriver()
	fmt.Fprintf(text, "writing %d keys of %d B through %s...\n", cfg.fillKeys, cfg.opts.ValueSize, cfg.protocol)
	start := time.Now()
	if err := bench.Preload(ctx, driver, cfg.fillKeys, 64, bench.Value(cfg.opts.ValueSize), cfg.opts.Timeout); err != nil {
		return nil, err
	}
	fmt.Fprintf(text, "written in %v\n\n", time.Since(start).Round(time.Millisecond))
	for i := range lc.nodes {
		if err := lc.waitCaughtUp(ctx, i, 60*time.Second); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(text, "%-5s %12s %12s %12s %12s %14s\n", "node", "rss before", "rss after", "rss peak", "data dir", "rss/key")
	for i := range lc.nodes {
		rss, hwm, err := procMemory(lc.pid(i))
		if err != nil {
			return nil, err
		}
		mem[i].RSSAfter, mem[i].HWM = rss, hwm
		mem[i].DataBytes = dirSize(lc.nodes[i].data)
		perKey := float64(mem[i].RSSAfter-mem[i].RSSBefore) / float64(cfg.fillKeys)
		fmt.Fprintf(text, "%-5s %12s %12s %12s %12s %12.0f B\n", mem[i].Node, mib(mem[i].RSSBefore), mib(rss), mib(hwm),
			mib(mem[i].DataBytes), perKey)
	}
	return mem, nil
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// procMemory reads VmRSS and VmHWM of pid from /proc/<pid>/status.
func procMemory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseProcStatus(b)
}

// parseProcStatus returns VmRSS and VmHWM, in bytes, from the text of a
// /proc/<pid>/status file.
func parseProcStatus(b []byte) (rss, hwm int64, err error) {
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc status: bad %s line %q", name, line)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc status: bad %s line %q", name, line)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
		found++
	}
	if found != 2 {
		return 0, 0, errors.New("/proc status: no VmRSS and VmHWM")
	}
	return rss, hwm, nil
}

func dirSize(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}
