package etcdapi

import (
	"context"
	"fmt"
	"hash/crc32"
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/api/v3/version"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

type clusterService struct {
	pb.UnimplementedClusterServer
	s *Server
}

// members returns the cluster's members as etcd shows them: ids are the
// raft ids of the names. Only this member's client URL is known.
func (c *clusterService) members() []*pb.Member {
	self := c.s.cfg.Store.Status().NodeID
	ms := c.s.cfg.Members.Members()
	out := make([]*pb.Member, len(ms))
	for i, m := range ms {
		out[i] = &pb.Member{ID: consensus.RaftID(m.ID), Name: m.ID, IsLearner: !m.Voter}
		if m.PeerAddr != "" {
			out[i].PeerURLs = []string{"http://" + m.PeerAddr}
		}
		if m.ID == self && c.s.cfg.ClientURL != "" {
			out[i].ClientURLs = []string{c.s.cfg.ClientURL}
		}
	}
	return out
}

// MemberList lists the members this node has applied (Linearizable asks
// nothing more: membership changes are in the log like writes).
func (c *clusterService) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.Linearizable {
		if err := c.s.cfg.Store.Sync(ctx, kv.Linearizable); err != nil {
			return nil, toGRPC(err)
		}
	}
	return &pb.MemberListResponse{Header: c.s.header(c.s.cfg.Store.Machine().Revision()), Members: c.members()}, nil
}

// name returns the name of the member with raft id id.
func (c *clusterService) name(id uint64) (string, error) {
	for _, m := range c.s.cfg.Members.Members() {
		if consensus.RaftID(m.ID) == id {
			return m.ID, nil
		}
	}
	return "", rpctypes.ErrGRPCMemberNotFound
}

// MemberRemove removes a member.
func (c *clusterService) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	name, err := c.name(r.ID)
	if err != nil {
		return nil, err
	}
	if err := c.s.cfg.Members.RemoveMember(ctx, name); err != nil {
		return nil, toGRPC(err)
	}
	return &pb.MemberRemoveResponse{Header: c.s.header(c.s.cfg.Store.Machine().Revision()), Members: c.members()}, nil
}

// MemberPromote makes a learner a voter.
func (c *clusterService) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	name, err := c.name(r.ID)
	if err != nil {
		return nil, err
	}
	if err := c.s.cfg.Members.PromoteMember(ctx, name); err != nil {
		return nil, toGRPC(err)
	}
	return &pb.MemberPromoteResponse{Header: c.s.header(c.s.cfg.Store.Machine().Revision()), Members: c.members()}, nil
}

// MemberAdd adds a member that `consensus serve --join` then starts.
// etcd's request carries only peer URLs, so the member's name comes from
// its one peer URL (peerMember): the URL's user (http://n4@host:port), or
// else its host:port. The member is added as a learner. With etcd's
// is_learner, it stays one until MemberPromote, as in etcd; without, the
// leader promotes it once it has caught up (consensus.Config.AutoPromote),
// as it does a member that --join added. Adding a voter at once, as etcd
// does, would grow the quorum before the member runs; in a one- or
// two-voter cluster, the joining node could then not even be added (a
// join reads the membership linearizably), so it could never start.
func (c *clusterService) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	name, addr, err := peerMember(r.PeerURLs)
	if err != nil {
		return nil, err
	}
	// Check against every committed change, as etcd does in its apply;
	// two adds of one URL on two members at once may both pass this.
	if err := c.s.cfg.Store.Sync(ctx, kv.Linearizable); err != nil {
		return nil, toGRPC(err)
	}
	for _, m := range c.s.cfg.Members.Members() {
		switch {
		case m.PeerAddr == addr:
			return nil, rpctypes.ErrGRPCPeerURLExist
		case m.ID == name:
			return nil, rpctypes.ErrGRPCMemberExist
		}
	}
	add := consensus.MemberChange{Op: consensus.AddLearner, Member: consensus.Member{ID: name, PeerAddr: addr}, KeepLearner: r.IsLearner}
	if err := c.s.cfg.Members.ChangeMembers(ctx, add); err != nil {
		return nil, toGRPC(err)
	}
	resp := &pb.MemberAddResponse{Header: c.s.header(c.s.cfg.Store.Machine().Revision()), Members: c.members()}
	for _, m := range resp.Members {
		if m.Name == name {
			resp.Member = m
		}
	}
	if resp.Member == nil {
		// Removed again between the change and this read.
		return nil, rpctypes.ErrGRPCMemberNotFound
	}
	return resp, nil
}

// MemberUpdate gives the member r.ID a new peer address, through the
// log (consensus.UpdatePeer): the other members dial it there from then
// on. As with etcd, update a member that is stopped, then start it at
// the new address (--listen); a member still running at its old address
// is cut off (its peers dial the new one) and, if it hears of the change,
// proposes its own address again. The URL may name the member (its user)
// but not another one.
func (c *clusterService) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	name, err := c.name(r.ID)
	if err != nil {
		return nil, err
	}
	user, addr, err := peerMember(r.PeerURLs)
	if err != nil {
		return nil, err
	}
	if user != name && user != addr {
		return nil, status.Errorf(codes.InvalidArgument, "%s: the peer URL names %q, not member %q", rpctypes.ErrorDesc(rpctypes.ErrGRPCMemberBadURLs), user, name)
	}
	if err := c.s.cfg.Store.Sync(ctx, kv.Linearizable); err != nil {
		return nil, toGRPC(err)
	}
	for _, m := range c.s.cfg.Members.Members() {
		if m.PeerAddr == addr && m.ID != name {
			return nil, rpctypes.ErrGRPCPeerURLExist
		}
	}
	update := consensus.MemberChange{Op: consensus.UpdatePeer, Member: consensus.Member{ID: name, PeerAddr: addr}}
	if err := c.s.cfg.Members.ChangeMembers(ctx, update); err != nil {
		return nil, toGRPC(err)
	}
	return &pb.MemberUpdateResponse{Header: c.s.header(c.s.cfg.Store.Machine().Revision()), Members: c.members()}, nil
}

// maxMemberName bounds a member's name, as the node does.
const maxMemberName = 256

// peerMember reads the name and peer address (host:port) of a member to
// add from etcd's peer URLs: exactly one http or https URL with a host
// and port and nothing else but, optionally, a user, which is the name;
// without one the name is the host:port. The address must be the one
// the member's --listen gives (the address the other members dial).
func peerMember(urls []string) (name, addr string, err error) {
	bad := func(format string, args ...any) error {
		return status.Errorf(codes.InvalidArgument, "%s: %s", rpctypes.ErrorDesc(rpctypes.ErrGRPCMemberBadURLs), fmt.Sprintf(format, args...))
	}
	if len(urls) != 1 {
		return "", "", bad("a member has one peer URL, got %d", len(urls))
	}
	u, err := url.Parse(urls[0])
	if err != nil {
		return "", "", bad("%v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", bad("peer URL %q: the scheme must be http or https", urls[0])
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", "", bad("peer URL %q: only a user (the name), a host and a port may be given", urls[0])
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return "", "", bad("peer URL %q: want host:port", urls[0])
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return "", "", bad("peer URL %q: bad port %q", urls[0], port)
	}
	name = u.Host
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			return "", "", bad("peer URL %q: a password has no meaning here; the user is the member's name", urls[0])
		}
		name = u.User.Username()
	}
	if name == "" || len(name) > maxMemberName || strings.ContainsFunc(name, unicode.IsControl) || !utf8.ValidString(name) {
		return "", "", bad("peer URL %q: the member name must be 1 to %d bytes of UTF-8 without control characters", urls[0], maxMemberName)
	}
	return name, u.Host, nil
}

type maintenanceService struct {
	pb.UnimplementedMaintenanceServer
	s *Server
}

// Status describes this member: the etcd API version served, the state's
// size, the leader, raft index and term.
func (m *maintenanceService) Status(ctx context.Context, r *pb.StatusRequest) (*pb.StatusResponse, error) {
	st := m.s.cfg.Store.Status()
	stats := m.s.cfg.Store.Machine().Stats()
	resp := &pb.StatusResponse{
		Header:           m.s.header(stats.Revision),
		Version:          version.Version,
		DbSize:           stats.Bytes,
		DbSizeInUse:      stats.Bytes,
		RaftIndex:        st.CommitIndex,
		RaftTerm:         st.Term,
		RaftAppliedIndex: st.AppliedIndex,
		StorageVersion:   version.Version,
	}
	if st.LeaderID != "" {
		resp.Leader = consensus.RaftID(st.LeaderID)
	}
	for _, mem := range st.Members {
		if mem.ID == st.NodeID {
			resp.IsLearner = !mem.Voter
		}
	}
	if st.LeaderID == "" {
		resp.Errors = append(resp.Errors, "no leader")
	}
	return resp, nil
}

// castagnoli is the CRC-32C table of Hash.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Hash hashes this member's whole replicated state (keys, leases, locks,
// queues, sessions: the state machine's snapshot encoding, which is
// deterministic) as it stands: equal on members that applied the same
// entries. It is not etcd's hash of its storage file.
func (m *maintenanceService) Hash(ctx context.Context, r *pb.HashRequest) (*pb.HashResponse, error) {
	v := m.s.cfg.Store.Machine().View()
	defer v.Release()
	h := crc32.New(castagnoli)
	if _, err := v.WriteTo(h); err != nil {
		return nil, toGRPC(err)
	}
	return &pb.HashResponse{Header: m.s.header(v.Revision), Hash: h.Sum32()}, nil
}

// HashKV hashes the keys as they were at r.Revision (0: now), which the
// state's history must still cover (kv.Machine.EtcdHashKV): equal on every
// member for the same revision.
func (m *maintenanceService) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	machine := m.s.cfg.Store.Machine()
	hash, rev, compact, err := machine.EtcdHashKV(r.Revision)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.HashKVResponse{Header: m.s.header(machine.Revision()), Hash: hash, HashRevision: rev, CompactRevision: compact}, nil
}

// Alarm lists alarms: there are none (the state's limits refuse writes
// with an error instead of raising an alarm). Activating or deactivating
// one is not supported.
func (m *maintenanceService) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	if r.Action != pb.AlarmRequest_GET {
		return nil, unimplemented("Alarm ACTIVATE and DEACTIVATE")
	}
	resp := &pb.AlarmResponse{Header: m.s.header(m.s.cfg.Store.Machine().Revision())}
	if m.s.cfg.Alarms != nil {
		for _, a := range m.s.cfg.Alarms() {
			if a.Alarm == api.AlarmDiverged {
				resp.Alarms = append(resp.Alarms, &pb.AlarmMember{MemberID: consensus.RaftID(a.Member), Alarm: pb.AlarmType_CORRUPT})
			}
		}
	}
	return resp, nil
}
