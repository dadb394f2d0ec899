package etcdapi

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/unrdf/consensus"
)

// leaderMover is the part of the membership that hands leadership over;
// *consensus.Node has it.
type leaderMover interface {
	TransferLeadershipTo(ctx context.Context, id string) (string, error)
}

// moveLeaderTimeout bounds a MoveLeader whose target does not take over
// (it died, or is cut off): the request then fails with etcd's timeout.
const moveLeaderTimeout = 10 * time.Second

// MoveLeader hands leadership to the voter with raft id TargetID, as
// `consensus leader transfer` does, and answers once it leads. As in etcd
// it must be asked of the leader (ErrNotLeader elsewhere: etcdctl
// move-leader finds the leader among its endpoints), and the target must
// be a voting member (ErrBadLeaderTransferee). Moving it to the leader
// itself succeeds at once.
func (m *maintenanceService) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	mover, ok := m.s.cfg.Members.(leaderMover)
	if !ok {
		return nil, unimplemented("MoveLeader on this membership")
	}
	st := m.s.cfg.Store.Status()
	if st.LeaderID == "" || st.LeaderID != st.NodeID {
		return nil, rpctypes.ErrGRPCNotLeader
	}
	var target *consensus.Member
	for _, mem := range m.s.cfg.Members.Members() {
		if consensus.RaftID(mem.ID) == r.TargetID {
			target = &mem
			break
		}
	}
	if target == nil || !target.Voter {
		return nil, rpctypes.ErrGRPCBadLeaderTransferee
	}
	if target.ID != st.NodeID {
		ctx, cancel := context.WithTimeout(ctx, moveLeaderTimeout)
		defer cancel()
		if _, err := mover.TransferLeadershipTo(ctx, target.ID); err != nil {
			return nil, toGRPC(err)
		}
	}
	return &pb.MoveLeaderResponse{Header: m.s.header(m.s.cfg.Store.Machine().Revision())}, nil
}
