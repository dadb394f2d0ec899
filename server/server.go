package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"time"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/cluster"
	"github.com/unrdf/consensus/etcdapi"
	"github.com/unrdf/consensus/internal/telemetry"
	"github.com/unrdf/consensus/kv"
	"github.com/unrdf/consensus/storage"
	"github.com/unrdf/consensus/transport"
)

// Config configures one running node: raft, storage, peer transport and
// the HTTP API. It mirrors the flags of `consensus serve`.
type Config struct {
	// Node configures raft. Node.ID is required; Node.Peers defaults to
	// this node alone at PeerAddr.
	Node consensus.Config
	// PeerAddr is the host:port peers connect to (`--listen`). Ignored if
	// PeerListener is set.
	PeerAddr string
	// PeerListener, if set, serves peer traffic (tests pass 127.0.0.1:0
	// listeners so ports are known before the cluster starts).
	PeerListener net.Listener
	// HTTPAddr is the host:port of the client API (`--http`). Ignored if
	// HTTPListener is set.
	HTTPAddr string
	// HTTPListener, if set, serves the client API.
	HTTPListener net.Listener
	// EtcdAddr, if set, is the host:port of etcd's v3 gRPC API
	// (`--etcd-listen`; package etcdapi), served with the HTTP API's
	// tokens and TLS. Ignored if EtcdListener is set. Empty: off.
	EtcdAddr string
	// EtcdListener, if set, serves etcd's v3 gRPC API.
	EtcdListener net.Listener
	// DataDir holds the node's durable state (`--data`). Default
	// ./data/<id>.
	DataDir string
	// HTTP configures the API handler.
	HTTP HTTPOptions
	// WatchHistory bounds the history watches resume from (the zero value
	// means kv's defaults: 10,000 events, 64 MiB).
	WatchHistory kv.WatchConfig
	// State configures the replicated state machine (kv.WithMaxKeys,
	// kv.WithMaxValueBytes, ...). Its limits are checked when commands
	// are applied, so every node of a cluster must be given the same.
	State []kv.Option
	// HTTPTLS, if set, serves the client API over TLS (HTTP/1.1 and
	// HTTP/2). Set ClientAuth and ClientCAs in it to require client
	// certificates.
	HTTPTLS *tls.Config
	// PeerServerTLS and PeerClientTLS, if set, run peer streams over
	// mutual TLS (see transport.Config). Ignored with PeerTransport.
	PeerServerTLS *tls.Config
	PeerClientTLS *tls.Config
	// PeerTransport, if set, builds the transport that carries raft
	// messages between this node and its peers, in place of the WebSocket
	// one: for tests (internal/testcluster runs servers over memnet with
	// it) and for embedders with a network of their own. Start calls it
	// once, after opening the node and before starting it, with the
	// cluster id (known only then: stored, or learnt by joining) and the
	// node as the handler of inbound traffic; the node also implements
	// consensus.SnapshotHandler and transport.PeerObserver, which a
	// transport may look for. Start then opens no peer listener
	// (PeerAddr, PeerServerTLS and PeerClientTLS are ignored, and setting
	// PeerListener too is an error); the server owns the transport and
	// closes it after stopping the node. PeerAddr, when set, is still the
	// address this node is known by in Node.Peers and when joining.
	// Peer metrics (/metrics) and Server.PeerAddr come from the transport
	// only if it has the WebSocket's Stats, PeerStats and Addr methods; a
	// transport that never calls PeerDown leaves fast failover to the
	// election timeout.
	PeerTransport func(clusterID uint64, h consensus.MessageHandler) (consensus.Transport, error)
	// WrapStorage, if set, wraps the node's log storage (the Pebble store
	// under DataDir) before the node starts: a seam for tests and
	// failpoints that watch or hold its writes. The server still closes
	// the store it opened.
	WrapStorage func(consensus.LogStorage) consensus.LogStorage
	// HashCheckInterval is how often the leader asks every member to hash
	// its state, and every member compares the hashes (hashcheck.go): a
	// member whose state diverged from the majority's raises an alarm and
	// answers no reads. Zero means DefaultHashCheckInterval (5 minutes);
	// negative turns the check off.
	HashCheckInterval time.Duration
	// Logger receives all logs. Nil discards them.
	Logger *slog.Logger
	// Join lists HTTP addresses of members of a running cluster
	// (`--join`). A node with empty storage asks them, in turn, to add it
	// as a learner, then starts without bootstrapping; a node with state
	// ignores Join. Node.Peers is then ignored.
	Join []string
	// JoinTimeout bounds the attempts to join. Default 60s.
	JoinTimeout time.Duration
	// Members says how this node calls other members' HTTP APIs (join,
	// forwarded leadership transfers, health probes): over TLS, with a
	// token. With HTTPTLS set and Members.TLS nil, members cannot be
	// probed over HTTP and health comes from the peer streams alone.
	Members MemberAPI
	// Cluster configures the health checks of the cluster manager
	// (zero fields: cluster.DefaultConfig).
	Cluster cluster.Config
	// Telemetry configures metrics (always served at /metrics) and
	// traces; see TelemetryOptions. Start sets Node.Observer and
	// Node.Tracer from it unless they are set.
	Telemetry TelemetryOptions
}

// valuesDir is the directory under DataDir of the state's values
// (kv.ValueStore): a cache of the state that every start empties and
// refills from the snapshot and the log.
const valuesDir = "values"

// ErrInvalidConfig is wrapped by the errors Start returns for a Config it
// cannot run with.
var ErrInvalidConfig = errors.New("server: invalid config")

// Server is a running node with its HTTP API.
type Server struct {
	cfg       Config
	log       *slog.Logger
	storage   *storage.Pebble
	values    *kv.ValueStore
	node      *consensus.Node
	transport consensus.Transport
	store     *kv.Store
	lessor    *kv.Lessor
	scheduler *kv.Scheduler
	cluster   *cluster.Manager
	api       *apiHandler
	// hashes runs the divergence check (hashcheck.go); nil when off.
	hashes *hashChecker
	// events records recent cluster events for GET /v1/events; its
	// follower goroutine ends when eventsStop closes.
	events     *EventLog
	eventsStop chan struct{}
	eventsDone chan struct{}
	telemetry  *telemetry.Telemetry
	http       *http.Server
	httpLn     net.Listener
	httpDone   chan error
	etcd       *etcdapi.Server
}

// Start opens the node's storage, joins its peers and serves the HTTP API.
// It returns once everything listens; the cluster may still be electing a
// leader.
func Start(cfg Config) (s *Server, err error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.Node.Logger = logger
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join("data", cfg.Node.ID)
	}
	peerAddr := cfg.PeerAddr
	if cfg.PeerListener != nil {
		peerAddr = cfg.PeerListener.Addr().String()
	}
	if len(cfg.Node.Peers) == 0 {
		cfg.Node.Peers = map[string]string{cfg.Node.ID: peerAddr}
	}
	if err := cfg.Node.Validate(); err != nil {
		return nil, err
	}
	srv := &Server{cfg: cfg, log: logger.With("node", cfg.Node.ID)}
	s = srv
	defer func() {
		// s is nil on the error returns; srv still holds what was opened.
		if err != nil {
			hadTransport := srv.transport != nil
			srv.closeParts()
			// Listeners handed in belong to us once Start is called.
			if cfg.PeerListener != nil && !hadTransport {
				cfg.PeerListener.Close()
			}
			if cfg.HTTPListener != nil && srv.httpLn == nil {
				cfg.HTTPListener.Close()
			}
			if cfg.EtcdListener != nil && srv.etcd == nil {
				cfg.EtcdListener.Close()
			}
		}
	}()

	if cfg.PeerTransport != nil && cfg.PeerListener != nil {
		return nil, fmt.Errorf("%w: PeerListener and PeerTransport are both set", ErrInvalidConfig)
	}
	s.storage, err = storage.Open(cfg.DataDir, storage.Options{Logger: logger})
	if err != nil {
		return nil, err
	}
	// Opened once the directory's lock is held: it empties its directory.
	s.values, err = kv.OpenValueStore(filepath.Join(cfg.DataDir, valuesDir), kv.ValueStoreOptions{})
	if err != nil {
		return nil, err
	}
	httpAddr := cfg.HTTPAddr
	if cfg.HTTPListener != nil {
		httpAddr = cfg.HTTPListener.Addr().String()
	}
	cfg.Node.HTTPAddr = httpAddr
	if err := srv.join(&cfg, peerAddr, httpAddr); err != nil {
		return nil, err
	}
	snaps, err := storage.OpenSnapshotDir(filepath.Join(cfg.DataDir, "snap"), nil)
	if err != nil {
		return nil, err
	}
	if err := srv.startTelemetry(&cfg); err != nil {
		return nil, err
	}
	machine := kv.NewMachine(append(slices.Clip(cfg.State), kv.WithValueStore(s.values))...)
	machine.SetWatchConfig(cfg.WatchHistory)
	nodeCfg := cfg.Node
	nodeCfg.Snapshots = snaps
	var logStorage consensus.LogStorage = s.storage
	if cfg.WrapStorage != nil {
		logStorage = cfg.WrapStorage(logStorage)
	}
	s.node, err = consensus.NewNode(nodeCfg, logStorage, machine)
	if err != nil {
		return nil, err
	}
	// Subscribed before the node starts, so a snapshot restored at start
	// is recorded; closed by the event log's follower, or here on failure.
	snapSub := s.node.SubscribeSnapshots(0)
	defer func() {
		if err != nil {
			snapSub.Close() // Close may be called twice
		}
	}()
	if cfg.PeerTransport != nil {
		tr, err := cfg.PeerTransport(s.node.ClusterID(), s.node)
		if err != nil {
			return nil, fmt.Errorf("server: peer transport: %w", err)
		}
		if tr == nil {
			return nil, fmt.Errorf("%w: PeerTransport returned no transport", ErrInvalidConfig)
		}
		s.transport = tr
	} else {
		ws, err := transport.New(transport.Config{
			ID:         consensus.RaftID(cfg.Node.ID),
			Name:       cfg.Node.ID,
			ListenAddr: cfg.PeerAddr,
			Listener:   cfg.PeerListener,
			ClusterID:  s.node.ClusterID(),
			ServerTLS:  cfg.PeerServerTLS,
			ClientTLS:  cfg.PeerClientTLS,
			Logger:     logger,
		}, s.node)
		if err != nil {
			return nil, err
		}
		s.transport = ws
	}
	s.node.Start(s.transport)
	s.store = kv.NewStore(s.node, machine)
	s.lessor = kv.NewLessor(kv.LeaderOf(s.node), machine, kv.LessorConfig{Logger: logger.With("part", "lessor")})
	s.store.UseLessor(s.lessor)
	s.lessor.Start()
	s.scheduler = kv.NewScheduler(kv.LeaderOf(s.node), machine, kv.SchedulerConfig{Logger: logger.With("part", "scheduler")})
	s.scheduler.Start()

	if cfg.HTTPListener != nil {
		s.httpLn = cfg.HTTPListener
	} else {
		s.httpLn, err = net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("server: listen http %s: %w", cfg.HTTPAddr, err)
		}
	}
	opts := cfg.HTTP
	if opts.Logger == nil {
		opts.Logger = logger
	}
	if opts.Membership == nil {
		opts.Membership = s.node
	}
	ccfg := cfg.Cluster
	if ccfg.Logger == nil {
		ccfg.Logger = logger
	}
	// Members are probed the way this node reaches their APIs; an API
	// served over TLS that this node has no TLS settings for is judged by
	// the peer streams alone.
	ccfg.NoHTTPProbe = ccfg.NoHTTPProbe || (cfg.HTTPTLS != nil && cfg.Members.TLS == nil)
	if ccfg.HTTPClient == nil {
		ccfg.HTTPClient = cfg.Members.client(0) // the probe bounds each call
	}
	if ccfg.HTTPScheme == "" {
		ccfg.HTTPScheme = cfg.Members.scheme()
	}
	if s.cluster, err = cluster.New(s.node, ccfg); err != nil {
		return nil, err
	}
	if opts.Events == nil {
		opts.Events = NewEventLog(0)
	}
	s.events, s.eventsStop, s.eventsDone = opts.Events, make(chan struct{}), make(chan struct{})
	clusterSub := s.cluster.Events().Subscribe(0)
	go func() {
		defer close(s.eventsDone)
		s.events.follow(cfg.Node.ID, clusterSub, snapSub, s.eventsStop)
	}()
	s.cluster.Start()
	if opts.Cluster == nil {
		opts.Cluster = s.cluster
	}
	opts.members = cfg.Members
	s.api = newAPIHandler(s.store, opts)
	if cfg.HashCheckInterval >= 0 {
		s.hashes = newHashChecker(s, cfg.HashCheckInterval)
		s.api.alarms = s.hashes.list
		s.hashes.start()
	}
	if err := s.registerNodeTelemetry(); err != nil {
		return nil, err
	}
	// net/http's own refusals (a request line it cannot parse, ...) are
	// JSON errors like the handler's (conn.go).
	s.httpLn = listenAPI(s.httpLn)
	if cfg.HTTPTLS != nil {
		tlsCfg := cfg.HTTPTLS.Clone()
		tlsCfg.NextProtos = []string{"h2", "http/1.1"}
		s.httpLn = tls.NewListener(s.httpLn, tlsCfg)
	}
	if err := srv.startEtcd(&cfg); err != nil {
		return nil, err
	}
	s.http = newHTTPServer(s.api, cfg.HTTPTLS != nil, logger)
	// Watch streams never end on their own; Shutdown must end them.
	s.http.RegisterOnShutdown(s.api.closeWatches)
	s.httpDone = make(chan error, 1)
	go func() { s.httpDone <- s.http.Serve(s.httpLn) }()
	s.log.Info("serving", "peer", s.PeerAddr(), "http", s.httpLn.Addr().String(), "etcd", s.EtcdAddr(), "data", cfg.DataDir)
	return s, nil
}

// HTTPAddr returns the address the HTTP API listens on.
func (s *Server) HTTPAddr() string { return s.httpLn.Addr().String() }

// PeerAddr returns the address the peer transport listens on, or "" if
// the transport (Config.PeerTransport) has no Addr method.
func (s *Server) PeerAddr() string {
	if a, ok := s.transport.(interface{ Addr() string }); ok {
		return a.Addr()
	}
	return ""
}

// Node returns the raft node.
func (s *Server) Node() *consensus.Node { return s.node }

// Store returns the key-value store served by this node.
func (s *Server) Store() *kv.Store { return s.store }

// Done is closed when the node stops on its own (a fatal storage error).
func (s *Server) Done() <-chan struct{} { return s.node.Done() }

// Close stops serving: in-flight HTTP requests, and requests in progress
// on /v1/ws connections, get up to ctx's deadline to finish, then the node,
// transport and storage close in that order.
//
// A leader first hands leadership to its most caught-up follower (for at
// most two seconds), so the cluster keeps a leader without waiting out an
// election timeout.
func (s *Server) Close(ctx context.Context) error {
	var errs []error
	if s.node != nil && s.node.IsLeader() {
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := s.node.TransferLeadership(tctx); err != nil {
			s.log.Warn("leadership transfer before stop failed", "err", err)
		}
		cancel()
	}
	if s.etcd != nil {
		if err := s.etcd.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server: etcd shutdown: %w", err))
		}
	}
	if s.http != nil {
		if err := s.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server: http shutdown: %w", err))
			s.http.Close()
		}
		// Shutdown leaves hijacked (WebSocket) connections alone.
		if err := s.api.ws.shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server: ws shutdown: %w", err))
		}
		if err := <-s.httpDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
		s.http = nil
	}
	if err := s.closeParts(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Cluster returns the cluster manager (health and events).
func (s *Server) Cluster() *cluster.Manager { return s.cluster }

// Events returns the log of recent cluster events (GET /v1/events).
func (s *Server) Events() *EventLog { return s.events }

func (s *Server) closeParts() error {
	var errs []error
	if s.telemetry != nil {
		// First, while the node still answers the last collection: a
		// final push of metrics and of batched spans to OTLP.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, s.telemetry.Shutdown(ctx))
		cancel()
		s.telemetry = nil
	}
	if s.eventsStop != nil {
		close(s.eventsStop)
		<-s.eventsDone
		s.eventsStop = nil
	}
	if s.hashes != nil {
		s.hashes.close()
		s.hashes = nil
	}
	if s.cluster != nil {
		s.cluster.Close()
		s.cluster = nil
	}
	if s.lessor != nil {
		s.lessor.Stop()
		s.lessor = nil
	}
	if s.scheduler != nil {
		s.scheduler.Stop()
		s.scheduler = nil
	}
	if s.node != nil {
		s.node.Stop()
		errs = append(errs, s.node.Err())
		s.node = nil
	}
	if s.transport != nil {
		errs = append(errs, s.transport.Close())
		s.transport = nil
	}
	if s.storage != nil {
		errs = append(errs, s.storage.Close())
		s.storage = nil
	}
	if s.values != nil {
		// Last: every reader of the state is gone.
		errs = append(errs, s.values.Close())
		s.values = nil
	}
	if s.http == nil && s.httpLn != nil && s.httpDone == nil {
		errs = append(errs, s.httpLn.Close())
	}
	return errors.Join(errs...)
}
