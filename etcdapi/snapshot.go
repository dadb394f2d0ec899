package etcdapi

import (
	"bufio"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/version"

	"github.com/unrdf/consensus/backup"
)

// snapshotChunk is the size of Snapshot's messages.
const snapshotChunk = 64 << 10

// Snapshot streams a backup of the state at a linearizable point, the file
// GET /v1/snapshot serves, in etcd's snapshot envelope (padding and a
// SHA-256, backup.EtcdWriter), so that `etcdctl snapshot save` accepts the
// download and `consensus snapshot restore` (or verify) reads the file.
// It is not etcd's database: etcdutl cannot restore it.
func (m *maintenanceService) Snapshot(r *pb.SnapshotRequest, stream pb.Maintenance_SnapshotServer) error {
	if m.s.cfg.Backup == nil {
		return unimplemented("Snapshot on this server")
	}
	sw := &snapshotSender{stream: stream, header: m.s.header(m.s.cfg.Store.Machine().Revision())}
	buf := bufio.NewWriterSize(sw, snapshotChunk)
	env := backup.NewEtcdWriter(buf)
	if err := m.s.cfg.Backup(stream.Context(), env); err != nil {
		// Whatever was sent fails etcdctl's size test or the checksum.
		return toGRPC(err)
	}
	if err := env.Close(); err != nil {
		return toGRPC(err)
	}
	return toGRPC(buf.Flush())
}

// snapshotSender sends what is written to it as Snapshot messages, the
// first carrying the version.
type snapshotSender struct {
	stream pb.Maintenance_SnapshotServer
	header *pb.ResponseHeader
	sent   bool
}

func (s *snapshotSender) Write(p []byte) (int, error) {
	resp := &pb.SnapshotResponse{Blob: p}
	if !s.sent {
		resp.Header, resp.Version = s.header, version.Version
	}
	if err := s.stream.Send(resp); err != nil {
		return 0, err
	}
	s.sent = true
	return len(p), nil
}
