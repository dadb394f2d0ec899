package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/cluster"
	"github.com/unrdf/consensus/internal/certs"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/server"
)

// serveFlags are the flags of `consensus serve` (the program contract in
// the README: names and defaults are stable).
type serveFlags struct {
	id, listen, httpAddr, peers, join, dataDir string
	etMin, etMax, hb                           time.Duration
	snapThreshold                              uint64
	maxBody                                    int64
	maxKeys, maxValue, maxInFlight             int
	rateLimit                                  float64
	rateBurst, maxWatches, watchEvents         int
	watchBytes                                 int64
	tokenFile, certFile, keyFile, clientCA     string
	peerCert, peerKey, peerCA, apiCA           string
	hcInterval, hcTimeout                      time.Duration
	hashCheck                                  time.Duration
	hcMaxFailed                                int
	logLevel, logFormat, pprofAddr             string
	etcdAddr                                   string
	gcPercent                                  int
	// gcPercentGiven is whether --gc-percent was on the command line.
	gcPercentGiven bool
}

// newServeCmd is `consensus serve`: one node, until SIGINT, SIGTERM or
// the command's context ends.
func newServeCmd(stdout, stderr io.Writer) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve --id ID [flags]",
		Short: "run one node",
		Long: "Run one node: raft over --listen, the client API on --http, state in --data.\n" +
			"Exit codes: 0 stopped by a signal, 1 the node failed, 2 usage error.",
		Args: exactArgs(),
		RunE: func(c *cobra.Command, _ []string) error {
			f.gcPercentGiven = c.Flags().Changed("gc-percent")
			return runServe(c.Context(), f, c.Flags().Changed("peers"), stdout, stderr)
		},
	}
	def := consensus.DefaultConfig("")
	hcDef := cluster.DefaultConfig()
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVar(&f.id, "id", "", "node id (required)")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8080", "host:port for peer WebSocket traffic; with --peers, this node's entry there (or 0.0.0.0 and its port)")
	fl.StringVar(&f.httpAddr, "http", "127.0.0.1:9080", "host:port for the client HTTP API, /metrics, /healthz and /readyz")
	fl.StringVar(&f.etcdAddr, "etcd-listen", "", "host:port for etcd's v3 gRPC API (etcdctl, clientv3; docs/ETCD.md), with --auth-token-file's tokens and --cert's TLS; off if empty")
	fl.StringVar(&f.peers, "peers", "", "initial cluster as id=host:port,... (this node included); default: this node alone. Used only on a first start: a node with state keeps its stored membership")
	fl.StringVar(&f.join, "join", "", "HTTP addresses (host:port,...) of members of a running cluster to join, tried in turn; ignored once the node has state")
	fl.StringVar(&f.dataDir, "data", "", "data directory (default ./data/<id>)")
	fl.DurationVar(&f.etMin, "election-timeout-min", def.ElectionTimeoutMin, "minimum election timeout")
	fl.DurationVar(&f.etMax, "election-timeout-max", def.ElectionTimeoutMax, "maximum election timeout (must be twice the minimum)")
	fl.DurationVar(&f.hb, "heartbeat-interval", def.HeartbeatInterval, "leader heartbeat interval")
	fl.Uint64Var(&f.snapThreshold, "snapshot-threshold", 1000, "applied entries between snapshots of the state (each followed by log compaction)")
	fl.Int64Var(&f.maxBody, "max-body-bytes", 1<<20, "largest accepted HTTP request body")
	fl.IntVar(&f.maxKeys, "max-keys", kv.DefaultMaxKeys, "most keys the replicated state holds (the seed's maxStateSize); give every node the same")
	fl.IntVar(&f.maxValue, "max-value-bytes", kv.DefaultMaxValueBytes, "largest value, checked when a write is applied; give every node the same")
	fl.IntVar(&f.maxInFlight, "max-in-flight", server.DefaultMaxInFlight, "requests served at once before answering 503 overloaded")
	fl.Float64Var(&f.rateLimit, "rate-limit", 0, "requests per second per client (token, else IP); 0 = no limit")
	fl.IntVar(&f.rateBurst, "rate-burst", 0, "burst above --rate-limit (default: the limit rounded up)")
	fl.IntVar(&f.maxWatches, "max-watches-per-client", server.DefaultMaxWatchesPerClient, "watches one client (token, else IP) may have open before 429 too_many_watches")
	fl.IntVar(&f.watchEvents, "watch-history-events", kv.DefaultWatchHistoryEvents, "events kept in memory for watches to resume from")
	fl.Int64Var(&f.watchBytes, "watch-history-bytes", kv.DefaultWatchHistoryBytes, "bytes of keys and values kept in memory for watches to resume from")
	fl.IntVar(&f.gcPercent, "gc-percent", defaultGCPercent, "Go's GOGC for this node: the heap grows this many percent over the live heap between collections; lower holds less memory for more GC CPU (default: $GOGC if set, else 50)")
	fl.StringVar(&f.tokenFile, "auth-token-file", "", "bearer tokens, one \"<token> <rw|ro>\" per line; enables authentication")
	fl.StringVar(&f.certFile, "cert", "", "TLS certificate for the HTTP API (PEM)")
	fl.StringVar(&f.keyFile, "key", "", "TLS key for the HTTP API (PEM)")
	fl.StringVar(&f.clientCA, "client-ca", "", "CA that HTTP clients' certificates must be signed by (optional; needs --cert)")
	fl.StringVar(&f.peerCert, "peer-cert", "", "TLS certificate for peer traffic (PEM); with --peer-key and --peer-ca enables mutual TLS between peers")
	fl.StringVar(&f.peerKey, "peer-key", "", "TLS key for peer traffic (PEM)")
	fl.StringVar(&f.peerCA, "peer-ca", "", "CA that peers' certificates must be signed by (PEM)")
	fl.StringVar(&f.apiCA, "api-ca", "", "CA that signed the members' HTTP API certificates (PEM); with it (or --cert) this node reaches other members' APIs over HTTPS for --join, forwarded leader transfers and health checks (default with --cert: the system's roots)")
	fl.DurationVar(&f.hcInterval, "health-check-interval", hcDef.HealthCheckInterval, "time between health checks of every member")
	fl.DurationVar(&f.hashCheck, "hash-check-interval", server.DefaultHashCheckInterval, "time between checks that every member's state is the same (negative: off)")
	fl.DurationVar(&f.hcTimeout, "health-check-timeout", hcDef.HealthCheckTimeout, "bound on one health check")
	fl.IntVar(&f.hcMaxFailed, "max-failed-health-checks", hcDef.MaxFailedHealthChecks, "failed checks in a row before a member is unhealthy")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fl.StringVar(&f.pprofAddr, "pprof", "", "host:port for Go's net/http/pprof profiles (off if empty; never expose it beyond localhost)")
	// No global flag applies: serve's --cert and --key are its own.
	return withGlobalFlags(cmd)
}

// serveUsage is a usage error of serve: one line, exit 2.
func serveUsage(format string, args ...any) error {
	return usageErrorf("serve: "+format, args...)
}

// serveFailure is a failure of a started serve: one line, exit 1.
func serveFailure(err error) error {
	return failuref("serve: %v", err)
}

// runServe runs one node until ctx ends or a signal arrives. peersGiven
// says whether --peers was on the command line.
func runServe(ctx context.Context, f serveFlags, peersGiven bool, stdout, stderr io.Writer) error {
	if f.id == "" {
		return serveUsage("--id is required")
	}
	logger, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return serveUsage("%v", err)
	}
	if err := checkListenAddr("--listen", f.listen); err != nil {
		return serveUsage("%v", err)
	}
	if err := checkListenAddr("--http", f.httpAddr); err != nil {
		return serveUsage("%v", err)
	}
	if f.etcdAddr != "" {
		if err := checkListenAddr("--etcd-listen", f.etcdAddr); err != nil {
			return serveUsage("%v", err)
		}
	}
	peerMap, err := parsePeers(f.peers)
	if err != nil {
		return serveUsage("%v", err)
	}
	if own, ok := peerMap[f.id]; ok {
		if err := checkOwnPeer(f.id, f.listen, own); err != nil {
			return serveUsage("%v", err)
		}
	}
	if f.maxWatches <= 0 || f.watchEvents <= 0 || f.watchBytes <= 0 {
		return serveUsage("--max-watches-per-client, --watch-history-events and --watch-history-bytes must be positive")
	}
	joinAddrs := splitList(f.join)
	if len(joinAddrs) > 0 && len(peerMap) > 0 {
		return serveUsage("--join and --peers exclude each other (a joining node learns the members from the cluster)")
	}
	if f.maxKeys <= 0 || f.maxValue <= 0 {
		return serveUsage("--max-keys and --max-value-bytes must be positive")
	}
	if f.snapThreshold == 0 {
		return serveUsage("--snapshot-threshold must be positive")
	}
	if err := checkGCPercent(f.gcPercent); err != nil {
		return serveUsage("%v", err)
	}
	cfg := consensus.DefaultConfig(f.id)
	cfg.ElectionTimeoutMin, cfg.ElectionTimeoutMax, cfg.HeartbeatInterval = f.etMin, f.etMax, f.hb
	cfg.SnapshotThreshold = f.snapThreshold
	cfg.Peers = peerMap
	if len(cfg.Peers) == 0 {
		cfg.Peers = map[string]string{f.id: f.listen}
	}
	if err := cfg.Validate(); err != nil {
		return serveUsage("%v", err)
	}
	if f.dataDir == "" {
		f.dataDir = filepath.Join("data", f.id)
	}

	scfg := server.Config{
		Node:    cfg,
		DataDir: f.dataDir,
		HTTP: server.HTTPOptions{
			MaxBodyBytes: f.maxBody,
			MaxInFlight:  f.maxInFlight,
			RateLimit:    f.rateLimit,
			RateBurst:    f.rateBurst,
			Watch:        server.WatchOptions{MaxPerClient: f.maxWatches},
		},
		State:             []kv.Option{kv.WithMaxKeys(f.maxKeys), kv.WithMaxValueBytes(f.maxValue)},
		WatchHistory:      kv.WatchConfig{HistoryEvents: f.watchEvents, HistoryBytes: f.watchBytes},
		Logger:            logger,
		Join:              joinAddrs,
		HashCheckInterval: f.hashCheck,
		Cluster: cluster.Config{
			HealthCheckInterval:   f.hcInterval,
			HealthCheckTimeout:    f.hcTimeout,
			MaxFailedHealthChecks: f.hcMaxFailed,
		},
	}
	if err := scfg.Cluster.Validate(); err != nil || f.hcInterval <= 0 || f.hcTimeout <= 0 || f.hcMaxFailed <= 0 {
		return serveUsage("health checks need a positive interval, timeout (at most the interval) and failure count")
	}
	if err := securityConfig(&scfg, f.tokenFile, f.certFile, f.keyFile, f.clientCA, f.peerCert, f.peerKey, f.peerCA, f.apiCA); err != nil {
		return serveUsage("%v", err)
	}
	// Both ports are bound before the node opens its storage: a start that
	// cannot bind them (a port in use) fails before a new data directory
	// records a bootstrap, so a retry with corrected flags starts afresh.
	if scfg.PeerListener, err = net.Listen("tcp", f.listen); err != nil {
		return serveFailure(fmt.Errorf("--listen: %w", err))
	}
	if scfg.HTTPListener, err = net.Listen("tcp", f.httpAddr); err != nil {
		scfg.PeerListener.Close()
		return serveFailure(fmt.Errorf("--http: %w", err))
	}
	if f.etcdAddr != "" {
		if scfg.EtcdListener, err = net.Listen("tcp", f.etcdAddr); err != nil {
			scfg.PeerListener.Close()
			scfg.HTTPListener.Close()
			return serveFailure(fmt.Errorf("--etcd-listen: %w", err))
		}
	}
	if path := os.Getenv(stallSaveEnv); path != "" {
		logger.Warn("test failpoint on: storage writes wait while this file exists", "env", stallSaveEnv, "file", path)
		scfg.WrapStorage = func(st consensus.LogStorage) consensus.LogStorage { return stallingStorage{st, path} }
	}
	restoreGC, gc := applyGCPercent(f.gcPercent, f.gcPercentGiven, os.Getenv("GOGC"))
	defer restoreGC()
	logger.Info("garbage collector target", "gcPercent", gc)
	srv, err := server.Start(scfg)
	if err != nil {
		return serveFailure(err)
	}
	var stopProfiles func()
	if f.pprofAddr != "" {
		if stopProfiles, err = serveProfiles(f.pprofAddr, logger); err != nil {
			_ = srv.Close(context.Background())
			return serveFailure(fmt.Errorf("--pprof: %w", err))
		}
		defer stopProfiles()
	}
	scheme := "http"
	if scfg.HTTPTLS != nil {
		scheme = "https"
	}
	etcd := ""
	if a := srv.EtcdAddr(); a != "" {
		etcd = ", etcd v3 API on " + a
	}
	fmt.Fprintf(stdout, "node %s serving %s://%s (peers on %s%s, data in %s)\n", f.id, scheme, srv.HTTPAddr(), srv.PeerAddr(), etcd, f.dataDir)

	// A restarted node keeps the membership it stored; say so when the
	// --peers given disagree, since they are silently unused otherwise.
	checkCtx, stopCheck := context.WithCancel(ctx)
	checked := make(chan struct{})
	node := srv.Node()
	go func() {
		defer close(checked)
		if !peersGiven {
			return
		}
		members, restarted, err := node.RecoveredMembers(checkCtx)
		if !restarted || err != nil {
			return
		}
		if stored := formatMembers(members); stored != formatPeers(peerMap) {
			logger.Warn("--peers differs from the membership stored in the data directory, which this node keeps; "+
				"to start a new cluster with --peers, remove the data directory",
				"peers", formatPeers(peerMap), "stored", stored, "data", f.dataDir)
		}
	}()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var failed error
	select {
	case sig := <-sigs:
		logger.Info("stopping", "signal", sig.String())
	case <-ctx.Done():
		logger.Info("stopping")
	case <-srv.Done():
		failed = srv.Node().Err()
		if failed == nil {
			failed = errors.New("the node stopped")
		}
	}
	stopCheck()
	<-checked
	closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Close(closeCtx); err != nil {
		failed = errors.Join(failed, err)
	}
	if failed != nil {
		return serveFailure(failed)
	}
	return nil
}

// checkListenAddr checks that addr is host:port with a port this machine
// can listen on (0 picks a free one).
func checkListenAddr(flag, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q is not host:port", flag, addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%s %q: port %q is not a number from 0 to 65535", flag, addr, port)
	}
	return nil
}

// checkOwnPeer checks that listen is where the other members will dial
// this node, its entry own in --peers: the same address, or an unspecified
// host (all interfaces) with the same port.
func checkOwnPeer(id, listen, own string) error {
	if listen == own {
		return nil
	}
	host, port, _ := net.SplitHostPort(listen)
	_, ownPort, _ := net.SplitHostPort(own)
	if ip := net.ParseIP(host); (host == "" || (ip != nil && ip.IsUnspecified())) && port == ownPort {
		return nil
	}
	return fmt.Errorf("--listen %s is not %s's address in --peers (%s), which the other members dial; give the same address to both", listen, id, own)
}

// formatPeers writes peers as the sorted id=host:port list --peers takes.
func formatPeers(peers map[string]string) string {
	list := make([]string, 0, len(peers))
	for id, addr := range peers {
		list = append(list, id+"="+addr)
	}
	sort.Strings(list)
	return strings.Join(list, ",")
}

// formatMembers writes members as formatPeers does.
func formatMembers(members []consensus.Member) string {
	peers := make(map[string]string, len(members))
	for _, m := range members {
		peers[m.ID] = m.PeerAddr
	}
	return formatPeers(peers)
}

// securityConfig loads tokens and TLS material named by flags into cfg.
func securityConfig(cfg *server.Config, tokenFile, cert, key, clientCA, peerCert, peerKey, peerCA, apiCA string) error {
	if tokenFile != "" {
		tokens, err := server.LoadTokens(tokenFile)
		if err != nil {
			return err
		}
		cfg.HTTP.Tokens = tokens
		// Members call each other's APIs (join, forwarded transfers,
		// health checks) with the file's first rw token: give every
		// member the same file.
		if cfg.Members.Token, err = server.FirstToken(tokenFile, server.RoleReadWrite); err != nil {
			return fmt.Errorf("--auth-token-file: members call each other with its first rw token: %w", err)
		}
	}
	switch {
	case apiCA != "":
		tlsCfg, err := certs.ClientConfig(cert, key, apiCA)
		if err != nil {
			return err
		}
		cfg.Members.TLS = tlsCfg
	case cert != "" && key != "":
		// The system's roots verify the members; this node's certificate
		// is its client certificate where their APIs want one.
		tlsCfg, err := certs.ClientConfig(cert, key, "")
		if err != nil {
			return err
		}
		cfg.Members.TLS = tlsCfg
	}
	switch {
	case (cert == "") != (key == ""):
		return errors.New("--cert and --key go together")
	case clientCA != "" && cert == "":
		return errors.New("--client-ca needs --cert and --key")
	case cert != "":
		tlsCfg, err := certs.ServerConfig(cert, key, clientCA)
		if err != nil {
			return err
		}
		cfg.HTTPTLS = tlsCfg
	}
	if peerCert == "" && peerKey == "" && peerCA == "" {
		return nil
	}
	if peerCert == "" || peerKey == "" || peerCA == "" {
		return errors.New("--peer-cert, --peer-key and --peer-ca go together (peers authenticate each other)")
	}
	srvTLS, err := certs.ServerConfig(peerCert, peerKey, peerCA)
	if err != nil {
		return err
	}
	cliTLS, err := certs.ClientConfig(peerCert, peerKey, peerCA)
	if err != nil {
		return err
	}
	cfg.PeerServerTLS, cfg.PeerClientTLS = srvTLS, cliTLS
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// parsePeers parses "id=host:port,id=host:port".
func parsePeers(s string) (map[string]string, error) {
	peers := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return peers, nil
	}
	for _, part := range strings.Split(s, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("--peers: %q is not id=host:port", part)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			return nil, fmt.Errorf("--peers: %s: %q is not host:port", name, addr)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return nil, fmt.Errorf("--peers: %s: %q: port %q is not a number from 1 to 65535", name, addr, port)
		}
		if _, dup := peers[name]; dup {
			return nil, fmt.Errorf("--peers: %q listed twice", name)
		}
		peers[name] = addr
	}
	return peers, nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format: %q is not text or json", format)
	}
}
