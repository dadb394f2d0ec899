package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/backup"
	"github.com/unrdf/consensus/kv"
)

// snapshotPath streams a backup of the replicated state.
const snapshotPath = "/v1/snapshot"

// SnapshotBackend is implemented by a Backend that serves GET
// /v1/snapshot; kv.Store does. A Backend without it answers the route 404.
type SnapshotBackend interface {
	// View captures the whole state at a linearizable point (see
	// kv.Store.View); ctx bounds the wait for that point.
	View(ctx context.Context) (*kv.View, error)
}

// maxConcurrentBackups bounds the backups one server streams at once:
// each holds a copy-on-write view of the state, which grows by what the
// writes made meanwhile change, for as long as its client takes to read.
const maxConcurrentBackups = 2

// backupSlots counts the backups being streamed. The zero value is ready.
type backupSlots struct{ n atomic.Int32 }

func (s *backupSlots) acquire() bool {
	if s.n.Add(1) > maxConcurrentBackups {
		s.n.Add(-1)
		return false
	}
	return true
}

func (s *backupSlots) release() { s.n.Add(-1) }

// serveSnapshot serves GET /v1/snapshot: a backup file (package backup) of
// the state at a linearizable point, streamed as it is written, with
// memory bounded by the writer's buffers. A read: read-only tokens may
// take it. Errors before the first byte are the API's JSON errors; a
// failure while streaming aborts the connection, and the cut file fails
// verification on the client's side.
func (h *apiHandler) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	sb, ok := h.backend.(SnapshotBackend)
	if !ok {
		writeError(w, apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "this server does not serve snapshots"})
		return
	}
	if _, ok := parseQuery(w, r); !ok {
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	if !h.backups.acquire() {
		writeError(w, apiError{status: http.StatusServiceUnavailable, code: api.CodeOverloaded,
			message: fmt.Sprintf("%d snapshots are being streamed already; retry shortly", maxConcurrentBackups)})
		return
	}
	defer h.backups.release()
	view, meta, err := h.backupView(r.Context(), sb)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer view.Release()
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="consensus-%d.backup"`, view.Revision))
	w.Header().Set("X-Consensus-Revision", strconv.FormatInt(view.Revision, 10))
	w.WriteHeader(http.StatusOK)
	sum, err := backup.Write(w, meta, view)
	if err != nil {
		// Part of the file is out: cut the connection so the client
		// cannot take it for a whole one (it would fail to verify anyway).
		h.log.Warn("snapshot stream failed", "revision", view.Revision, "err", err)
		panic(http.ErrAbortHandler)
	}
	h.log.Info("snapshot streamed", "revision", view.Revision, "keys", view.Keys, "bytes", sum.Size, "checksum", sum.ChecksumString())
}

// backupView captures the state at a linearizable point, waiting at most
// the request timeout for it, and describes it as a backup's metadata.
// The caller releases the view.
func (h *apiHandler) backupView(ctx context.Context, sb SnapshotBackend) (*kv.View, backup.Metadata, error) {
	ctx, cancel := context.WithTimeout(ctx, h.opts.RequestTimeout)
	view, err := sb.View(ctx)
	cancel()
	if err != nil {
		return nil, backup.Metadata{}, err
	}
	st := h.backend.Status()
	meta := backup.Metadata{
		Node: st.NodeID, Revision: view.Revision, AppliedIndex: view.AppliedIndex,
		RaftTerm: st.Term, CommitIndex: st.CommitIndex, Keys: int64(view.Keys),
		Created: time.Now().UTC(),
	}
	if h.opts.Membership != nil {
		meta.ClusterID = h.opts.Membership.ClusterID()
	}
	return view, meta, nil
}

// writeBackup writes a backup file of the state at a linearizable point
// to w, within the same bound on concurrent backups as GET /v1/snapshot:
// the backup etcd's Maintenance.Snapshot serves.
func (h *apiHandler) writeBackup(ctx context.Context, w io.Writer) error {
	sb, ok := h.backend.(SnapshotBackend)
	if !ok {
		return fmt.Errorf("this server does not serve snapshots: %w", api.ErrUnavailable)
	}
	if !h.backups.acquire() {
		return fmt.Errorf("%d snapshots are being streamed already; retry shortly: %w", maxConcurrentBackups, api.ErrUnavailable)
	}
	defer h.backups.release()
	view, meta, err := h.backupView(ctx, sb)
	if err != nil {
		return err
	}
	defer view.Release()
	sum, err := backup.Write(w, meta, view)
	if err != nil {
		return err
	}
	h.log.Info("snapshot streamed through etcd's API", "revision", view.Revision, "keys", view.Keys, "bytes", sum.Size, "checksum", sum.ChecksumString())
	return nil
}
