package etcdapi

import (
	"context"
	"errors"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/unrdf/consensus/kv"
)

// progressInterval is how often a watch created with progress_notify
// gets a progress notification: etcd's default.
const progressInterval = 10 * time.Minute

// maxWatchesPerStream bounds the watches of one stream, so a client
// cannot make a node hold unbounded watchers on one connection.
const maxWatchesPerStream = 1024

type watchService struct {
	pb.UnimplementedWatchServer
	s *Server
}

// watchStream is one Watch RPC: its watches, and a lock that orders its
// sends (a gRPC stream takes one sender at a time).
type watchStream struct {
	s      *Server
	stream pb.Watch_WatchServer
	ctx    context.Context

	sendMu sync.Mutex

	mu      sync.Mutex
	watches map[int64]*watch
	nextID  int64
	wg      sync.WaitGroup
}

// watch is one watch of a stream: a kv.Watcher on a prefix that covers
// the watched range, filtered to the range.
type watch struct {
	id       int64
	key, end string
	noPut    bool
	noDelete bool
	prevKV   bool
	progress bool
	w        *kv.Watcher
	cancel   context.CancelFunc
}

// Watch serves one watch stream: creates, cancels and progress requests
// in, events out.
func (ws *watchService) Watch(stream pb.Watch_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	st := &watchStream{s: ws.s, stream: stream, ctx: ctx, watches: map[int64]*watch{}}
	defer func() {
		cancel()
		st.wg.Wait()
	}()
	// The stream is received from on its own goroutine, and the handler
	// returns only after it has: gRPC allows no use of a stream after its
	// handler returns. Server.Stop ends the stream (grpc.Stop), which
	// ends the receive.
	recvErr := make(chan error, 1)
	go func() { recvErr <- st.recvLoop() }()
	ticker := time.NewTicker(progressInterval)
	defer ticker.Stop()
	for {
		select {
		case err := <-recvErr:
			return err
		case <-ticker.C:
			st.mu.Lock()
			for _, w := range st.watches {
				if w.progress {
					w.w.RequestProgress()
				}
			}
			st.mu.Unlock()
		}
	}
}

func (st *watchStream) recvLoop() error {
	for {
		req, err := st.stream.Recv()
		if err != nil {
			if st.ctx.Err() != nil {
				return nil
			}
			return err
		}
		switch r := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			if err := st.create(r.CreateRequest); err != nil {
				return err
			}
		case *pb.WatchRequest_CancelRequest:
			if err := st.cancel(r.CancelRequest.WatchId, ""); err != nil {
				return err
			}
		case *pb.WatchRequest_ProgressRequest:
			if err := st.progressAll(); err != nil {
				return err
			}
		}
	}
}

func (st *watchStream) send(resp *pb.WatchResponse) error {
	st.sendMu.Lock()
	defer st.sendMu.Unlock()
	return st.stream.Send(resp)
}

// refuse answers a create that cannot be served with one response,
// created and canceled with the reason, as etcd refuses a watch; a
// compacted start revision is answered as etcd does, created, then
// canceled with the compact revision.
func (st *watchStream) refuse(id int64, rev int64, reason string, compact int64) error {
	h := st.s.header(rev)
	if compact == 0 {
		return st.send(&pb.WatchResponse{Header: h, WatchId: id, Created: true, Canceled: true, CancelReason: reason})
	}
	if err := st.send(&pb.WatchResponse{Header: h, WatchId: id, Created: true}); err != nil {
		return err
	}
	return st.send(&pb.WatchResponse{Header: h, WatchId: id, Canceled: true, CancelReason: reason, CompactRevision: compact})
}

func (st *watchStream) create(r *pb.WatchCreateRequest) error {
	rev := st.s.cfg.Store.Machine().Revision()
	st.mu.Lock()
	id := r.WatchId
	switch {
	case id == 0:
		for {
			st.nextID++
			if _, used := st.watches[st.nextID]; !used {
				break
			}
		}
		id = st.nextID
	case id < 0:
		st.mu.Unlock()
		return st.refuse(id, rev, "etcdserver: watch id must not be negative", 0)
	default:
		if _, used := st.watches[id]; used {
			st.mu.Unlock()
			return st.refuse(id, rev, "etcdserver: watch id already in use", 0)
		}
	}
	full := len(st.watches) >= maxWatchesPerStream
	st.mu.Unlock()
	switch {
	case full:
		return st.refuse(id, rev, "etcdserver: too many watches on one stream", 0)
	case len(r.Key) == 0:
		return st.refuse(id, rev, "etcdserver: key is not provided", 0)
	}
	w := &watch{id: id, key: string(r.Key), end: string(r.RangeEnd), progress: r.ProgressNotify, prevKV: r.PrevKv}
	for _, f := range r.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			w.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			w.noDelete = true
		}
	}
	wctx, cancel := context.WithCancel(st.ctx)
	kw, err := st.s.cfg.Store.Watch(wctx, watchPrefix(w.key, w.end), max(r.StartRevision, 0))
	if err != nil {
		cancel()
		var ce *kv.CompactedError
		if errors.As(err, &ce) {
			return st.refuse(id, rev, "etcdserver: mvcc: required revision has been compacted", ce.Oldest)
		}
		return st.refuse(id, rev, toGRPC(err).Error(), 0)
	}
	w.w, w.cancel = kw, cancel
	st.mu.Lock()
	st.watches[id] = w
	st.mu.Unlock()
	if err := st.send(&pb.WatchResponse{Header: st.s.header(max(rev, kw.StartRevision()-1)), WatchId: id, Created: true}); err != nil {
		cancel()
		return err
	}
	st.wg.Add(1)
	go st.forward(w)
	return nil
}

// watchPrefix is the longest key prefix a kv watch can take that covers
// [key, end): every key in the range starts with it.
func watchPrefix(key, end string) string {
	var p string
	switch {
	case end == "":
		p = key
	case end == kv.EtcdRangeAll:
		p = ""
	default:
		n := 0
		for n < len(key) && n < len(end) && key[n] == end[n] {
			n++
		}
		p = key[:n]
	}
	// A prefix is any bytes (kv.ValidatePrefix), within the key limit.
	if len(p) > kv.DefaultMaxKeyBytes {
		p = p[:kv.DefaultMaxKeyBytes]
	}
	return p
}

// inRange reports whether key is in w's range.
func (w *watch) inRange(key string) bool {
	switch {
	case w.end == "":
		return key == w.key
	case w.end == kv.EtcdRangeAll:
		return key >= w.key
	}
	return key >= w.key && key < w.end
}

// forward sends w's events until it ends. A watch with prev_kv that can
// no longer find the item an event replaced (the history dropped it
// while the watch lagged) ends as compacted, as one that lags too far.
func (st *watchStream) forward(w *watch) {
	defer st.wg.Done()
	var fault error
events:
	for resp := range w.w.C() {
		out := &pb.WatchResponse{Header: st.s.header(resp.Revision), WatchId: w.id}
		for _, ev := range resp.Events {
			if !w.inRange(ev.Item.Key) {
				continue
			}
			e := &mvccpb.Event{Kv: keyValue(ev.Item, false)}
			if ev.Type == kv.EventDelete {
				if w.noDelete {
					continue
				}
				e.Type = mvccpb.DELETE
				e.Kv = &mvccpb.KeyValue{Key: []byte(ev.Item.Key), ModRevision: ev.Item.Revision}
			} else if w.noPut {
				continue
			}
			if w.prevKV {
				prev, ok, err := st.s.cfg.Store.Machine().PrevItem(ev.Item.Revision, ev.Item.Key)
				if err != nil {
					fault = err
					break events
				}
				if ok {
					e.PrevKv = keyValue(prev, false)
				}
			}
			out.Events = append(out.Events, e)
		}
		// A response whose events were all filtered out is dropped, as
		// etcd sends nothing then; a progress report has none to begin
		// with and is sent.
		if len(out.Events) == 0 && len(resp.Events) > 0 {
			continue
		}
		if st.send(out) != nil {
			return
		}
	}
	if fault != nil {
		w.cancel()
		w.w.Close()
	} else {
		fault = w.w.Err()
	}
	var ce *kv.CompactedError
	if errors.As(fault, &ce) {
		st.mu.Lock()
		_, live := st.watches[w.id]
		delete(st.watches, w.id)
		st.mu.Unlock()
		if live {
			_ = st.send(&pb.WatchResponse{Header: st.s.header(st.s.cfg.Store.Machine().Revision()), WatchId: w.id,
				Canceled: true, CompactRevision: ce.Oldest, CancelReason: "etcdserver: mvcc: required revision has been compacted"})
		}
	}
}

// cancel ends watch id and answers that it is canceled.
func (st *watchStream) cancel(id int64, reason string) error {
	st.mu.Lock()
	w, ok := st.watches[id]
	delete(st.watches, id)
	st.mu.Unlock()
	if !ok {
		return nil
	}
	w.cancel()
	w.w.Close()
	return st.send(&pb.WatchResponse{Header: st.s.header(st.s.cfg.Store.Machine().Revision()), WatchId: id, Canceled: true, CancelReason: reason})
}

// progressAll answers a progress request: each watch reports how far it
// has got, once it has caught up; with no watch, the stream gets the
// current revision under watch id -1, as etcd answers.
func (st *watchStream) progressAll() error {
	st.mu.Lock()
	n := len(st.watches)
	for _, w := range st.watches {
		w.w.RequestProgress()
	}
	st.mu.Unlock()
	if n > 0 {
		return nil
	}
	return st.send(&pb.WatchResponse{Header: st.s.header(st.s.cfg.Store.Machine().Revision()), WatchId: -1})
}
