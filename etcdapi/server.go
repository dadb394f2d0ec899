package etcdapi

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// Membership is what the Cluster and Maintenance services need of the
// node: *consensus.Node implements it.
type Membership interface {
	ClusterID() uint64
	Members() []consensus.Member
	// ChangeMembers applies membership changes (MemberAdd adds a
	// learner, kept one if etcd's is_learner is set).
	ChangeMembers(ctx context.Context, changes ...consensus.MemberChange) error
	PromoteMember(ctx context.Context, id string) error
	RemoveMember(ctx context.Context, id string) error
}

// LeaderLeases answers the lease requests only the leader's lease clock
// can (a keepalive, a time to live): on a follower it asks the leader.
// kv.Store answers them on the leader alone.
type LeaderLeases interface {
	KeepAlive(ctx context.Context, id kv.LeaseID) (kv.Lease, error)
	TimeToLive(ctx context.Context, id kv.LeaseID) (kv.Lease, error)
}

// Access is what a token allows.
type Access int

// Accesses, from none to all.
const (
	AccessNone Access = iota
	AccessRead
	AccessWrite
)

// Config configures a Server.
type Config struct {
	// Store is the replicated state served. Required.
	Store *kv.Store
	// Members is the node's membership. Required.
	Members Membership
	// Leases answers keepalives and times to live; nil: Store (on the
	// leader only; followers answer "no leader").
	Leases LeaderLeases
	// Authorize, if set, turns on authentication: every RPC needs a
	// token, in the metadata "authorization" ("Bearer <token>") or
	// "token" (what etcd clients send), and Authorize says what it
	// allows.
	Authorize func(token string) Access
	// TLS, if set, serves over TLS.
	TLS *tls.Config
	// ClientURL is this member's etcd client URL, as Cluster.MemberList
	// shows it ("" for none).
	ClientURL string
	// Alarms, if set, lists the alarms this member has raised
	// (server's divergence check): Maintenance.Alarm shows a diverged
	// member as etcd's CORRUPT alarm.
	Alarms func() []api.Alarm
	// Backup, if set, writes a backup file (package backup) of the state
	// at a linearizable point to w: Maintenance.Snapshot serves it in
	// etcd's snapshot envelope. Unset, Snapshot is Unimplemented.
	Backup func(ctx context.Context, w io.Writer) error
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}

// Server serves etcd's v3 gRPC API.
type Server struct {
	cfg  Config
	log  *slog.Logger
	grpc *grpc.Server
	ln   net.Listener
	done chan error

	// unary counts the unary RPCs in flight, which Stop lets finish;
	// stopping refuses new ones. Guarded by mu; idle is closed when
	// unary drops to 0 while stopping.
	mu       sync.Mutex
	unary    int
	stopping bool
	idle     chan struct{}
}

// ErrInvalidConfig is wrapped by New's errors.
var ErrInvalidConfig = errors.New("etcdapi: invalid config")

// New returns a Server for cfg; Serve starts it.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Members == nil {
		return nil, errors.Join(ErrInvalidConfig, errors.New("a store and a membership are required"))
	}
	if cfg.Leases == nil {
		cfg.Leases = cfg.Store
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{cfg: cfg, log: log}
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.unaryAuth),
		grpc.ChainStreamInterceptor(s.streamAuth),
		// etcd's own limits: a request of up to 1.5 MiB plus overhead.
		grpc.MaxRecvMsgSize(2 << 20),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	s.grpc = grpc.NewServer(opts...)
	pb.RegisterKVServer(s.grpc, &kvService{s: s})
	pb.RegisterWatchServer(s.grpc, &watchService{s: s})
	pb.RegisterLeaseServer(s.grpc, &leaseService{s: s})
	pb.RegisterClusterServer(s.grpc, &clusterService{s: s})
	pb.RegisterMaintenanceServer(s.grpc, &maintenanceService{s: s})
	return s, nil
}

// Serve serves on ln, in the background, until Stop.
func (s *Server) Serve(ln net.Listener) {
	s.ln = ln
	s.done = make(chan error, 1)
	go func() { s.done <- s.grpc.Serve(ln) }()
	s.log.Info("serving etcd v3 API", "addr", ln.Addr().String())
}

// Addr returns the address served, or nil before Serve.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Stop lets unary RPCs in flight finish until ctx ends, refusing new
// ones, then closes every connection, which ends streams (watches,
// keepalives): their clients go on against another member, as they do
// when an etcd member stops.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	s.idle = make(chan struct{})
	if s.unary == 0 {
		close(s.idle)
	}
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
	}
	s.grpc.Stop()
	if s.done == nil {
		return nil
	}
	if err := <-s.done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// header is the response header at revision rev.
func (s *Server) header(rev int64) *pb.ResponseHeader {
	st := s.cfg.Store.Status()
	return &pb.ResponseHeader{
		ClusterId: s.cfg.Members.ClusterID(),
		MemberId:  consensus.RaftID(st.NodeID),
		Revision:  rev,
		RaftTerm:  st.Term,
	}
}

type tokenKey struct{}

// TokenFrom returns the token the RPC of ctx carried ("" for none): a
// LeaderLeases that asks the leader passes it on.
func TokenFrom(ctx context.Context) string {
	t, _ := ctx.Value(tokenKey{}).(string)
	return t
}

// readMethods are the RPCs a read-only token may call.
var readMethods = map[string]bool{
	pb.KV_Range_FullMethodName:              true,
	pb.Watch_Watch_FullMethodName:           true,
	pb.Lease_LeaseTimeToLive_FullMethodName: true,
	pb.Lease_LeaseLeases_FullMethodName:     true,
	pb.Cluster_MemberList_FullMethodName:    true,
	pb.Maintenance_Status_FullMethodName:    true,
	pb.Maintenance_Alarm_FullMethodName:     true,
	pb.Maintenance_Hash_FullMethodName:      true,
	pb.Maintenance_HashKV_FullMethodName:    true,
	pb.Maintenance_Snapshot_FullMethodName:  true,
	pb.KV_RangeStream_FullMethodName:        true,
}

// readRequest reports whether req, a request to method, only reads: a
// read method's, or a read-only transaction (which, as in etcd, needs
// only the right to read).
func readRequest(method string, req any) bool {
	if readMethods[method] {
		return true
	}
	if method != pb.KV_Txn_FullMethodName {
		return false
	}
	r, ok := req.(*pb.TxnRequest)
	return ok && txnReadOnly(r, 0)
}

// authorize checks the token of ctx for a request to method (read: one
// that only reads, readRequest) and returns ctx with the token.
func (s *Server) authorize(ctx context.Context, method string, read bool) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	token := ""
	if v := md.Get("authorization"); len(v) > 0 {
		const prefix = "bearer "
		if len(v[0]) > len(prefix) && strings.EqualFold(v[0][:len(prefix)], prefix) {
			token = strings.TrimSpace(v[0][len(prefix):])
		}
	} else if v := md.Get(rpctypes.TokenFieldNameGRPC); len(v) > 0 {
		token = v[0]
	}
	if token != "" {
		ctx = context.WithValue(ctx, tokenKey{}, token)
	}
	if s.cfg.Authorize == nil {
		return ctx, nil
	}
	if token == "" {
		return nil, rpctypes.ErrGRPCUserEmpty
	}
	switch s.cfg.Authorize(token) {
	case AccessWrite:
		return ctx, nil
	case AccessRead:
		if read {
			return ctx, nil
		}
		return nil, rpctypes.ErrGRPCPermissionDenied
	}
	return nil, rpctypes.ErrGRPCInvalidAuthToken
}

func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil, rpctypes.ErrGRPCStopped
	}
	s.unary++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.unary--
		if s.unary == 0 && s.stopping {
			close(s.idle)
		}
		s.mu.Unlock()
	}()
	ctx, err := s.authorize(ctx, info.FullMethod, readRequest(info.FullMethod, req))
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

type authStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a authStream) Context() context.Context { return a.ctx }

func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := s.authorize(ss.Context(), info.FullMethod, readMethods[info.FullMethod])
	if err != nil {
		return err
	}
	return handler(srv, authStream{ServerStream: ss, ctx: ctx})
}
