package server

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/etcdapi"
	"github.com/unrdf/consensus/kv"
)

// startEtcd serves etcd's v3 gRPC API (Config.EtcdAddr or EtcdListener)
// on this node's store, with the HTTP API's tokens and TLS.
func (s *Server) startEtcd(cfg *Config) error {
	if cfg.EtcdListener == nil && cfg.EtcdAddr == "" {
		return nil
	}
	ln := cfg.EtcdListener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.EtcdAddr); err != nil {
			return fmt.Errorf("server: listen etcd %s: %w", cfg.EtcdAddr, err)
		}
	}
	scheme := "http://"
	if cfg.HTTPTLS != nil {
		scheme = "https://"
	}
	ecfg := etcdapi.Config{
		Store:     s.store,
		Members:   s.node,
		Leases:    etcdLeases{s: s},
		TLS:       cfg.HTTPTLS,
		ClientURL: scheme + ln.Addr().String(),
		Alarms:    s.api.alarms,
		Backup:    s.api.writeBackup,
		Logger:    s.log.With("part", "etcd"),
	}
	if t := s.api.opts.Tokens; t != nil {
		ecfg.Authorize = func(token string) etcdapi.Access {
			switch t.Lookup(token) {
			case RoleReadWrite:
				return etcdapi.AccessWrite
			case RoleReadOnly:
				return etcdapi.AccessRead
			}
			return etcdapi.AccessNone
		}
	}
	e, err := etcdapi.New(ecfg)
	if err != nil {
		ln.Close()
		return err
	}
	s.etcd = e
	e.Serve(ln)
	return nil
}

// EtcdAddr returns the address etcd's v3 API listens on, "" if it is off.
func (s *Server) EtcdAddr() string {
	if s.etcd == nil {
		return ""
	}
	return s.etcd.Addr().String()
}

// etcdLeases answers etcd's keepalives and times to live on the leader,
// and on a follower asks the leader's HTTP API, as the HTTP lease routes
// do, with the caller's token.
type etcdLeases struct{ s *Server }

func (l etcdLeases) KeepAlive(ctx context.Context, id kv.LeaseID) (kv.Lease, error) {
	return l.ask(ctx, true, id)
}

func (l etcdLeases) TimeToLive(ctx context.Context, id kv.LeaseID) (kv.Lease, error) {
	return l.ask(ctx, false, id)
}

func (l etcdLeases) ask(ctx context.Context, keepalive bool, id kv.LeaseID) (kv.Lease, error) {
	call := l.s.store.TimeToLive
	if keepalive {
		call = l.s.store.KeepAlive
	}
	lease, err := call(ctx, id)
	if !errors.Is(err, consensus.ErrNotLeader) {
		return lease, err
	}
	authorization := ""
	if t := etcdapi.TokenFrom(ctx); t != "" {
		authorization = "Bearer " + t
	}
	ctx = context.WithValue(ctx, accessKey{}, access{authorization: authorization})
	lease, e := l.s.api.askLeaderLease(ctx, keepalive, id)
	if e != nil {
		return kv.Lease{}, fmt.Errorf("server: %s: %w", e.message, errors.Join(api.Sentinels(e.code)...))
	}
	return lease, nil
}
