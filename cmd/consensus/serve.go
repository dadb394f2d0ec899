package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/cluster"
	"github.com/unrdf/consensus/internal/certs"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/server"
)

func serveCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := consensus.DefaultConfig("")
	id := fs.String("id", "", "node id (required)")
	listen := fs.String("listen", "127.0.0.1:8080", "host:port for peer WebSocket traffic")
	httpAddr := fs.String("http", "127.0.0.1:9080", "host:port for the client HTTP API, /metrics, /healthz and /readyz")
	peers := fs.String("peers", "", "initial cluster as id=host:port,... (this node included); default: this node alone")
	join := fs.String("join", "", "HTTP addresses (host:port,...) of members of a running cluster to join, tried in turn; ignored once the node has state")
	dataDir := fs.String("data", "", "data directory (default ./data/<id>)")
	etMin := fs.Duration("election-timeout-min", def.ElectionTimeoutMin, "minimum election timeout")
	etMax := fs.Duration("election-timeout-max", def.ElectionTimeoutMax, "maximum election timeout (must be twice the minimum)")
	hb := fs.Duration("heartbeat-interval", def.HeartbeatInterval, "leader heartbeat interval")
	snapThreshold := fs.Uint64("snapshot-threshold", 1000, "applied entries between snapshots of the state (each followed by log compaction)")
	maxBody := fs.Int64("max-body-bytes", 1<<20, "largest accepted HTTP request body")
	maxKeys := fs.Int("max-keys", kv.DefaultMaxKeys, "most keys the replicated state holds (the seed's maxStateSize); give every node the same")
	maxValue := fs.Int("max-value-bytes", kv.DefaultMaxValueBytes, "largest value, checked when a write is applied; give every node the same")
	maxInFlight := fs.Int("max-in-flight", server.DefaultMaxInFlight, "requests served at once before answering 503 overloaded")
	rateLimit := fs.Float64("rate-limit", 0, "requests per second per client (token, else IP); 0 = no limit")
	rateBurst := fs.Int("rate-burst", 0, "burst above --rate-limit (default: the limit rounded up)")
	maxWatches := fs.Int("max-watches-per-client", server.DefaultMaxWatchesPerClient, "watches one client (token, else IP) may have open before 429 too_many_watches")
	watchEvents := fs.Int("watch-history-events", kv.DefaultWatchHistoryEvents, "events kept in memory for watches to resume from")
	watchBytes := fs.Int64("watch-history-bytes", kv.DefaultWatchHistoryBytes, "bytes of keys and values kept in memory for watches to resume from")
	tokenFile := fs.String("auth-token-file", "", "bearer tokens, one \"<token> <rw|ro>\" per line; enables authentication")
	certFile := fs.String("cert", "", "TLS certificate for the HTTP API (PEM)")
	keyFile := fs.String("key", "", "TLS key for the HTTP API (PEM)")
	clientCA := fs.String("client-ca", "", "CA that HTTP clients' certificates must be signed by (optional; needs --cert)")
	peerCert := fs.String("peer-cert", "", "TLS certificate for peer traffic (PEM); with --peer-key and --peer-ca enables mutual TLS between peers")
	peerKey := fs.String("peer-key", "", "TLS key for peer traffic (PEM)")
	peerCA := fs.String("peer-ca", "", "CA that peers' certificates must be signed by (PEM)")
	apiCA := fs.String("api-ca", "", "CA that signed the members' HTTP API certificates (PEM); with it (or --cert) this node reaches other members' APIs over HTTPS for --join, forwarded leader transfers and health checks (default with --cert: the system's roots)")
	hcDef := cluster.DefaultConfig()
	hcInterval := fs.Duration("health-check-interval", hcDef.HealthCheckInterval, "time between health checks of every member")
	hcTimeout := fs.Duration("health-check-timeout", hcDef.HealthCheckTimeout, "bound on one health check")
	hcMaxFailed := fs.Int("max-failed-health-checks", hcDef.MaxFailedHealthChecks, "failed checks in a row before a member is unhealthy")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	pprofAddr := fs.String("pprof", "", "host:port for Go's net/http/pprof profiles (off if empty; never expose it beyond localhost)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *id == "" {
		fmt.Fprintln(stderr, "serve: --id is required")
		return 2
	}
	logger, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "serve:", err)
		return 2
	}
	peerMap, err := parsePeers(*peers)
	if err != nil {
		fmt.Fprintln(stderr, "serve:", err)
		return 2
	}
	if *maxWatches <= 0 || *watchEvents <= 0 || *watchBytes <= 0 {
		fmt.Fprintln(stderr, "serve: --max-watches-per-client, --watch-history-events and --watch-history-bytes must be positive")
		return 2
	}
	joinAddrs := splitList(*join)
	if len(joinAddrs) > 0 && len(peerMap) > 0 {
		fmt.Fprintln(stderr, "serve: --join and --peers exclude each other (a joining node learns the members from the cluster)")
		return 2
	}
	if *maxKeys <= 0 || *maxValue <= 0 {
		fmt.Fprintln(stderr, "serve: --max-keys and --max-value-bytes must be positive")
		return 2
	}
	if *snapThreshold == 0 {
		fmt.Fprintln(stderr, "serve: --snapshot-threshold must be positive")
		return 2
	}
	cfg := consensus.DefaultConfig(*id)
	cfg.ElectionTimeoutMin, cfg.ElectionTimeoutMax, cfg.HeartbeatInterval = *etMin, *etMax, *hb
	cfg.SnapshotThreshold = *snapThreshold
	cfg.Peers = peerMap
	if len(cfg.Peers) == 0 {
		cfg.Peers = map[string]string{*id: *listen}
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "serve:", err)
		return 2
	}
	if *dataDir == "" {
		*dataDir = filepath.Join("data", *id)
	}

	scfg := server.Config{
		Node:     cfg,
		PeerAddr: *listen,
		HTTPAddr: *httpAddr,
		DataDir:  *dataDir,
		HTTP: server.HTTPOptions{
			MaxBodyBytes: *maxBody,
			MaxInFlight:  *maxInFlight,
			RateLimit:    *rateLimit,
			RateBurst:    *rateBurst,
			Watch:        server.WatchOptions{MaxPerClient: *maxWatches},
		},
		State:        []kv.Option{kv.WithMaxKeys(*maxKeys), kv.WithMaxValueBytes(*maxValue)},
		WatchHistory: kv.WatchConfig{HistoryEvents: *watchEvents, HistoryBytes: *watchBytes},
		Logger:       logger,
		Join:         joinAddrs,
		Cluster: cluster.Config{
			HealthCheckInterval:   *hcInterval,
			HealthCheckTimeout:    *hcTimeout,
			MaxFailedHealthChecks: *hcMaxFailed,
		},
	}
	if err := scfg.Cluster.Validate(); err != nil || *hcInterval <= 0 || *hcTimeout <= 0 || *hcMaxFailed <= 0 {
		fmt.Fprintln(stderr, "serve: health checks need a positive interval, timeout (at most the interval) and failure count")
		return 2
	}
	if err := securityConfig(&scfg, *tokenFile, *certFile, *keyFile, *clientCA, *peerCert, *peerKey, *peerCA, *apiCA); err != nil {
		fmt.Fprintln(stderr, "serve:", err)
		return 2
	}
	srv, err := server.Start(scfg)
	if err != nil {
		fmt.Fprintln(stderr, "serve:", err)
		return 1
	}
	if *pprofAddr != "" {
		stopProfiles, err := serveProfiles(*pprofAddr, logger)
		if err != nil {
			fmt.Fprintln(stderr, "serve: --pprof:", err)
			_ = srv.Close(context.Background())
			return 1
		}
		defer stopProfiles()
	}
	scheme := "http"
	if scfg.HTTPTLS != nil {
		scheme = "https"
	}
	fmt.Fprintf(stdout, "node %s serving %s://%s (peers on %s, data in %s)\n", *id, scheme, srv.HTTPAddr(), srv.PeerAddr(), *dataDir)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	code := 0
	select {
	case sig := <-sigs:
		logger.Info("stopping", "signal", sig.String())
	case <-srv.Done():
		code = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		fmt.Fprintln(stderr, "serve:", err)
		code = 1
	}
	return code
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
