package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/unrdf/consensus/bench"
	"github.com/unrdf/consensus/internal/stages"
)

const benchLong = `Measures a cluster: each workload at each concurrency for --duration (after
an unmeasured --warmup), printing ops/s, latency percentiles and errors per
cell; the lease and lock workloads (lock, keepalive, expiry; --protocol ws)
report acquire+release pairs, keepalives, and how late expired leases' keys
are seen deleted. Without --endpoints it starts a local cluster of child serve processes
in a temporary directory and stops it at the end. Only loopback addresses.

Modes other than workloads (they need a cluster bench started):
  --failover N    kill -9 the leader N times; time until a write succeeds
  --fill-keys N   write N keys, then report each node's memory (RSS)
  --scale-keys N  write N keys, then report each node's RSS and data
                  directory, a backup's size and time, the restart time of a
                  stopped follower and of the whole cluster, and how long a
                  new member (serve --join) takes to catch up

With --watchers N the workloads run while N watchers follow bench/ over
GET /v1/watch (each from its own loopback source address, so its own client
on the server; with a token they are all the token's client, up to
--max-watches-per-client a node), and a probe write every 20 ms times the
delivery to each, from the write's sending and from its acknowledgement.
With --watch-protocol ws the watchers follow bench/ over /v1/ws instead,
--watches-per-conn of them to a connection (each connection its own client:
the nodes need --max-watches-per-client at least that; bench sets it on
the nodes it starts).`

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
	// scaleKeys is the key count of a --scale-keys run.
	scaleKeys int
	// watchers is the number of watchers of the workloads' prefix.
	watchers int
	// watchProtocol is how they watch: sse or ws; watchesPerConn, with
	// ws, how many share a connection.
	watchProtocol  string
	watchesPerConn int
	nodes          int
	dataDir        string
	keepData       bool
	logLevel       string
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
	fs.IntVar(&cfg.scaleKeys, "scale-keys", 0, "instead of workloads, write `N` keys of --value-size bytes and report RSS, data directory, backup size and time, restart and catch-up times")
	fs.IntVar(&cfg.watchers, "watchers", 0, "while the workloads run, follow bench/ with `N` watchers (distinct client addresses) and report the delivery lag of probe writes")
	fs.StringVar(&cfg.watchProtocol, "watch-protocol", "sse", "how --watchers watch: sse (a GET /v1/watch stream each) or ws (--watches-per-conn to a /v1/ws connection)")
	fs.IntVar(&cfg.watchesPerConn, "watches-per-conn", 1000, "with --watch-protocol ws: watches to a connection")
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
	if cfg.protocol == "http" {
		for _, w := range cfg.opts.Workloads {
			if slices.Contains(bench.CoordWorkloads, w) || slices.Contains(bench.QueueWorkloads, w) {
				return fail("--workloads: %s runs over the Go client only: use --protocol ws", w)
			}
		}
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
	case cfg.scaleKeys < 0 || cfg.scaleKeys > 10_000_000:
		return fail("--scale-keys: %d is not between 0 and 10000000", cfg.scaleKeys)
	case cfg.scaleKeys > 0 && (cfg.failover > 0 || cfg.fillKeys > 0 || cfg.watchers > 0):
		return fail("--scale-keys is a run of its own: drop --failover, --fill-keys and --watchers")
	case cfg.scaleKeys > 0 && len(cfg.endpoints) > 0:
		return fail("--scale-keys needs processes bench starts itself: drop --endpoints")
	case cfg.scaleKeys > 0 && cfg.nodes < 3:
		return fail("--scale-keys needs at least 3 nodes")
	case cfg.watchers < 0 || cfg.watchers > maxBenchWatchers:
		return fail("--watchers: %d is not between 0 and %d", cfg.watchers, maxBenchWatchers)
	case cfg.watchers > 0 && (cfg.failover > 0 || cfg.fillKeys > 0):
		return fail("--watchers goes with the workloads, not --failover or --fill-keys")
	case cfg.watchProtocol != "sse" && cfg.watchProtocol != "ws":
		return fail("--watch-protocol: %q is not sse or ws", cfg.watchProtocol)
	case cfg.watchesPerConn < 1 || cfg.watchesPerConn > maxBenchWatchers:
		return fail("--watches-per-conn: %d is not between 1 and %d", cfg.watchesPerConn, maxBenchWatchers)
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
	Failover *failoverReport    `json:"failover,omitempty"`
	Memory   []bench.NodeMemory `json:"memory,omitempty"`
	Scale    *bench.Scale       `json:"scale,omitempty"`
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
	case cfg.scaleKeys > 0:
		report.Scale, err = runScale(ctx, lc, cfg, text)
	default:
		report.Results, report.Watch, err = runWorkloads(ctx, cfg, lc, endpoints, stdout, text)
		// The client's stage marks (internal/stages), beside the nodes'.
		stages.Dump("client")
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
func runWorkloads(ctx context.Context, cfg benchConfig, lc *benchCluster, endpoints []string, stdout, text io.Writer) ([]bench.Result, *watchReport, error) {
	endpoints, leader, err := leaderFirst(ctx, cfg.target, endpoints)
	if err != nil {
		return nil, nil, err
	}
	driver, closeDriver, err := newDriver(cfg.protocol, cfg.target, endpoints, slices.Max(cfg.opts.Concurrency))
	if err != nil {
		return nil, nil, err
	}
	defer closeDriver()
	o := cfg.opts
	switch {
	case cfg.cpuPids != nil:
		if o.CPU, err = bench.CheckedPidMeter(cfg.cpuPids); err != nil {
			return nil, nil, fmt.Errorf("--cpu-pids: %w", err)
		}
	case cfg.cpu:
		o.CPU = lc.cpuMeter()
	}
	var fanout *watchFanout
	if cfg.watchers > 0 {
		if fanout, err = startWatchFanout(ctx, cfg.target, endpoints, cfg.watchers, cfg.watchProtocol == "ws", cfg.watchesPerConn); err != nil {
			return nil, nil, err
		}
	}
	fmt.Fprintf(text, "target %s (leader %s), protocol %s, %d B values, %d keys, %v warm-up + %v per cell\n\n",
		endpoints[0], leader, cfg.protocol, o.ValueSize, o.Keys, o.Warmup, o.Duration)
	bench.WriteHeader(text)
	var progress func(bench.Progress)
	clear := func() {}
	if f, ok := stdout.(*os.File); ok && !cfg.json && bench.IsTerminal(f) {
		progress, clear = bench.ProgressLine(f)
	}
	results, err := bench.Suite(ctx, driver, o, "consensus", cfg.protocol, progress, func(r bench.Result) {
		clear()
		bench.WriteRow(text, r)
	})
	for i := range results {
		results[i].Nodes, results[i].Watchers = len(endpoints), cfg.watchers
	}
	if fanout == nil {
		return results, nil, err
	}
	wr, probeErr := fanout.stop()
	writeWatchReport(text, wr)
	if err == nil && probeErr != nil {
		err = fmt.Errorf("watchers: %w", probeErr)
	}
	return results, &wr, err
}

// writeWatchReport prints the --watchers figures under the table.
func writeWatchReport(w io.Writer, r watchReport) {
	who := "each from its own loopback address"
	if r.SharedIdentity {
		who = "sharing one client identity (a token, or a non-IPv4 endpoint)"
	}
	if r.Transport == "ws" {
		fmt.Fprintf(w, "\nwatchers: %d watches of %s over %d /v1/ws connections to %d nodes, each connection %s; %d ended early; %d events read\n",
			r.Watchers, watchPrefix, r.Streams, r.Nodes, strings.TrimPrefix(who, "each "), r.Ended, r.Events)
	} else {
		fmt.Fprintf(w, "\nwatchers: %d SSE streams of %s over %d nodes, %s; %d ended early; %d events read\n",
			r.Watchers, watchPrefix, r.Nodes, who, r.Ended, r.Events)
	}
	fmt.Fprintf(w, "probes: %d writes every %v, delivered %d of %d; delivery lag p50 %s p90 %s p99 %s max %s; probe write p50 %s p99 %s\n",
		r.Probes, bench.ProbeInterval, r.Delivered, int64(r.Probes)*int64(r.Watchers),
		bench.FormatDuration(r.Lag.P50), bench.FormatDuration(r.Lag.P90), bench.FormatDuration(r.Lag.P99),
		bench.FormatDuration(r.Lag.Max), bench.FormatDuration(r.ProbeWrite.P50), bench.FormatDuration(r.ProbeWrite.P99))
	fmt.Fprintf(w, "delivery lag from the probe write's acknowledgement: p50 %s p90 %s p99 %s max %s\n",
		bench.FormatDuration(r.AckLag.P50), bench.FormatDuration(r.AckLag.P90), bench.FormatDuration(r.AckLag.P99),
		bench.FormatDuration(r.AckLag.Max))
}
