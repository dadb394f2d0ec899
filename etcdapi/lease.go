package etcdapi

import (
	"context"
	"errors"
	"io"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// maxLeaseTTLSeconds is the longest time to live our leases take (30
// days); etcd's limit is higher.
const maxLeaseTTLSeconds = api.MaxLeaseTTLMs / 1000

type leaseService struct {
	pb.UnimplementedLeaseServer
	s *Server
}

// seconds is a time to live in milliseconds as etcd's whole seconds,
// rounded up so that a lease never looks shorter than it is.
func seconds(ms int64) int64 { return (ms + 999) / 1000 }

// LeaseGrant grants a lease of the leases API: the same lease the HTTP
// and /v1/ws APIs see. etcd TTLs are seconds; a TTL of 0 or less gets the
// least TTL, as etcd gives its minimum.
func (l *leaseService) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if r.TTL > maxLeaseTTLSeconds {
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	if r.ID < 0 {
		return nil, rpctypes.ErrGRPCLeaseNotFound
	}
	ttl := time.Duration(max(r.TTL, 1)) * time.Second
	lease, err := l.s.cfg.Store.Grant(ctx, ttl, kv.LeaseID(r.ID))
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.LeaseGrantResponse{Header: l.s.header(l.s.cfg.Store.Machine().Revision()), ID: int64(lease.ID), TTL: seconds(lease.TTLMs)}, nil
}

// LeaseRevoke revokes a lease and deletes its keys.
func (l *leaseService) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	rev, err := l.s.cfg.Store.Revoke(ctx, kv.LeaseID(r.ID))
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.LeaseRevokeResponse{Header: l.s.header(rev)}, nil
}

// LeaseKeepAlive renews leases, one answer per request, in order. A lease
// that is gone is answered with TTL 0, as etcd does.
func (l *leaseService) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp := &pb.LeaseKeepAliveResponse{ID: req.ID}
		lease, err := l.s.cfg.Leases.KeepAlive(ctx, kv.LeaseID(req.ID))
		switch {
		case errors.Is(err, kv.ErrLeaseNotFound):
		case err != nil:
			if ctx.Err() != nil {
				return toGRPC(ctx.Err())
			}
			return toGRPC(err)
		default:
			resp.TTL = seconds(lease.TTLMs)
		}
		resp.Header = l.s.header(l.s.cfg.Store.Machine().Revision())
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// LeaseTimeToLive describes a lease by the leader's clock; TTL -1 for a
// lease that is gone, as etcd answers.
func (l *leaseService) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	lease, err := l.s.cfg.Leases.TimeToLive(ctx, kv.LeaseID(r.ID))
	h := l.s.header(l.s.cfg.Store.Machine().Revision())
	if errors.Is(err, kv.ErrLeaseNotFound) {
		return &pb.LeaseTimeToLiveResponse{Header: h, ID: r.ID, TTL: -1}, nil
	}
	if err != nil {
		return nil, toGRPC(err)
	}
	resp := &pb.LeaseTimeToLiveResponse{Header: h, ID: r.ID, GrantedTTL: seconds(lease.TTLMs), TTL: seconds(lease.TTLMs)}
	if lease.RemainingMs != nil {
		// etcd truncates what is left to whole seconds.
		resp.TTL = *lease.RemainingMs / 1000
	}
	if r.Keys {
		for _, k := range lease.Keys {
			resp.Keys = append(resp.Keys, []byte(k))
		}
	}
	return resp, nil
}

// LeaseLeases lists every lease.
func (l *leaseService) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	ls, err := l.s.cfg.Store.ListLeases(ctx, kv.Linearizable)
	if err != nil {
		return nil, toGRPC(err)
	}
	resp := &pb.LeaseLeasesResponse{Header: l.s.header(l.s.cfg.Store.Machine().Revision())}
	for _, x := range ls {
		resp.Leases = append(resp.Leases, &pb.LeaseStatus{ID: int64(x.ID)})
	}
	return resp, nil
}
