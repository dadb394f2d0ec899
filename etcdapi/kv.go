package etcdapi

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/unrdf/consensus/kv"
)

// maxTxnOps is etcd's default --max-txn-ops.
const maxTxnOps = 128

type kvService struct {
	pb.UnimplementedKVServer
	s *Server
}

// Range reads a key or a range, at the current revision or at an older
// one the state's history still covers (kv.Machine.EtcdRangeAt):
// linearizable, or this node's applied state when serializable.
func (k *kvService) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	items, rev, err := k.readRange(ctx, r)
	if err != nil {
		return nil, err
	}
	resp := rangeResponse(r, items)
	resp.Header = k.s.header(rev)
	return resp, nil
}

// readRange checks r and reads the keys in its range, in key order, and
// the revision read at, as Range and RangeStream answer them: after a
// ReadIndex unless serializable, from the history for an older revision.
// Errors are etcd's gRPC errors.
func (k *kvService) readRange(ctx context.Context, r *pb.RangeRequest) ([]kv.Item, int64, error) {
	if len(r.Key) == 0 {
		return nil, 0, rpctypes.ErrGRPCEmptyKey
	}
	if err := checkSort(r); err != nil {
		return nil, 0, err
	}
	if !r.Serializable {
		if err := k.s.cfg.Store.Sync(ctx, kv.Linearizable); err != nil {
			return nil, 0, toGRPC(err)
		}
	}
	items, rev, err := k.s.cfg.Store.Machine().EtcdRangeAt(string(r.Key), string(r.RangeEnd), r.Revision)
	if err != nil {
		return nil, 0, toGRPC(err)
	}
	return items, rev, nil
}

func checkSort(r *pb.RangeRequest) error {
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.SortOrder)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.SortTarget)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	return nil
}

// rangeResponse applies r's filters, sort, limit, keys_only and
// count_only to items, the keys in r's range in key order, as etcd does:
// Count is the number of keys in the range, before the filters.
func rangeResponse(r *pb.RangeRequest, items []kv.Item) *pb.RangeResponse {
	resp := &pb.RangeResponse{Count: int64(len(items))}
	if r.CountOnly {
		return resp
	}
	kept, more := rangeSelect(r, items)
	resp.More = more
	resp.Kvs = make([]*mvccpb.KeyValue, len(kept))
	for i := range kept {
		resp.Kvs[i] = keyValue(kept[i], r.KeysOnly)
	}
	return resp
}

// rangeSelect returns the items of items (the keys in r's range in key
// order) that r's revision filters keep, in r's order, cut at r's limit,
// and whether the limit cut any.
func rangeSelect(r *pb.RangeRequest, items []kv.Item) (kept []kv.Item, more bool) {
	kept = items[:0:0]
	for _, it := range items {
		switch {
		case r.MinModRevision > 0 && it.Revision < r.MinModRevision,
			r.MaxModRevision > 0 && it.Revision > r.MaxModRevision,
			r.MinCreateRevision > 0 && it.CreateRevision < r.MinCreateRevision,
			r.MaxCreateRevision > 0 && it.CreateRevision > r.MaxCreateRevision:
			continue
		}
		kept = append(kept, it)
	}
	order := r.SortOrder
	if r.SortTarget != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	}
	if order != pb.RangeRequest_NONE && !(order == pb.RangeRequest_ASCEND && r.SortTarget == pb.RangeRequest_KEY) {
		var less func(a, b kv.Item) int
		switch r.SortTarget {
		case pb.RangeRequest_KEY:
			less = func(a, b kv.Item) int { return cmp.Compare(a.Key, b.Key) }
		case pb.RangeRequest_VERSION:
			less = func(a, b kv.Item) int { return cmp.Compare(a.Version, b.Version) }
		case pb.RangeRequest_CREATE:
			less = func(a, b kv.Item) int { return cmp.Compare(a.CreateRevision, b.CreateRevision) }
		case pb.RangeRequest_MOD:
			less = func(a, b kv.Item) int { return cmp.Compare(a.Revision, b.Revision) }
		case pb.RangeRequest_VALUE:
			less = func(a, b kv.Item) int { return bytes.Compare(kv.EtcdValue(a.Value), kv.EtcdValue(b.Value)) }
		}
		if order == pb.RangeRequest_DESCEND {
			asc := less
			less = func(a, b kv.Item) int { return asc(b, a) }
		}
		slices.SortStableFunc(kept, less)
	}
	if r.Limit > 0 && int64(len(kept)) > r.Limit {
		kept, more = kept[:r.Limit], true
	}
	return kept, more
}

// keyValue is it as etcd shows it.
func keyValue(it kv.Item, keysOnly bool) *mvccpb.KeyValue {
	out := &mvccpb.KeyValue{
		Key:            []byte(it.Key),
		CreateRevision: it.CreateRevision,
		ModRevision:    it.Revision,
		Version:        it.Version,
		Lease:          int64(it.Lease),
	}
	if !keysOnly {
		out.Value = kv.EtcdValue(it.Value)
	}
	return out
}

func keyValues(items []kv.Item) []*mvccpb.KeyValue {
	if len(items) == 0 {
		return nil
	}
	out := make([]*mvccpb.KeyValue, len(items))
	for i := range items {
		out[i] = keyValue(items[i], false)
	}
	return out
}

// Put stores a key: one replicated transaction.
func (k *kvService) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	op, err := putOp(r)
	if err != nil {
		return nil, err
	}
	res, rev, err := k.s.cfg.Store.EtcdTxn(ctx, &kv.EtcdTxn{Success: []kv.EtcdOp{op}})
	if err != nil {
		return nil, toGRPC(err)
	}
	resp := &pb.PutResponse{Header: k.s.header(rev)}
	if items := res.Responses[0].Items; len(items) > 0 {
		resp.PrevKv = keyValue(items[0], false)
	}
	return resp, nil
}

func putOp(r *pb.PutRequest) (kv.EtcdOp, error) {
	switch {
	case len(r.Key) == 0:
		return kv.EtcdOp{}, rpctypes.ErrGRPCEmptyKey
	case r.IgnoreValue && len(r.Value) != 0:
		return kv.EtcdOp{}, rpctypes.ErrGRPCValueProvided
	case r.IgnoreLease && r.Lease != 0:
		return kv.EtcdOp{}, rpctypes.ErrGRPCLeaseProvided
	}
	op := kv.EtcdOp{Type: kv.EtcdPut, Key: string(r.Key), Lease: r.Lease,
		IgnoreValue: r.IgnoreValue, IgnoreLease: r.IgnoreLease, PrevKV: r.PrevKv}
	if !r.IgnoreValue {
		op.Value = kv.EtcdStoredValue(r.Value)
	}
	return op, nil
}

// DeleteRange deletes a key or a range: one replicated transaction.
func (k *kvService) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	op, err := deleteOp(r)
	if err != nil {
		return nil, err
	}
	res, rev, err := k.s.cfg.Store.EtcdTxn(ctx, &kv.EtcdTxn{Success: []kv.EtcdOp{op}})
	if err != nil {
		return nil, toGRPC(err)
	}
	d := res.Responses[0]
	return &pb.DeleteRangeResponse{Header: k.s.header(rev), Deleted: d.Deleted, PrevKvs: keyValues(d.Items)}, nil
}

func deleteOp(r *pb.DeleteRangeRequest) (kv.EtcdOp, error) {
	if len(r.Key) == 0 {
		return kv.EtcdOp{}, rpctypes.ErrGRPCEmptyKey
	}
	return kv.EtcdOp{Type: kv.EtcdDelete, Key: string(r.Key), End: string(r.RangeEnd), PrevKV: r.PrevKv}, nil
}

// Txn applies a transaction atomically. One that writes on no branch
// (compares and ranges only, nested transactions included) needs no log
// entry: as etcd does, it is evaluated on this member's state after a
// linearizable read (none if every range is serializable), at one
// revision, and its ranges may read older revisions from the history.
// Any other is one replicated command, whose ranges read the current
// revision only: it is applied on every member, which must all answer
// alike, and the history is each member's own.
func (k *kvService) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	t, err := txnOf(r, 0)
	if err != nil {
		return nil, err
	}
	if t.ReadOnly() {
		c := kv.Linearizable
		if txnSerializable(r) {
			c = kv.Local
		}
		if err := k.s.cfg.Store.Sync(ctx, c); err != nil {
			return nil, toGRPC(err)
		}
		res, rev, err := k.s.cfg.Store.Machine().EtcdReadTxn(t)
		if err != nil {
			return nil, toGRPC(err)
		}
		return txnResponse(r, res, k.s.header(rev)), nil
	}
	if rangeAtRevision(r) {
		return nil, unimplemented("a range at a given revision inside a transaction that writes")
	}
	res, rev, err := k.s.cfg.Store.EtcdTxn(ctx, t)
	if err != nil {
		return nil, toGRPC(err)
	}
	return txnResponse(r, res, k.s.header(rev)), nil
}

// txnSerializable reports whether every operation of the read-only r,
// nested transactions included, is a serializable range, and there is at
// least one: such a transaction reads this member's applied state. (etcd
// also serves a transaction without ranges so; here a compare alone is
// linearizable.)
func txnSerializable(r *pb.TxnRequest) bool {
	ranges := 0
	var walk func(r *pb.TxnRequest) bool
	walk = func(r *pb.TxnRequest) bool {
		for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
			for _, o := range ops {
				if rr := o.GetRequestRange(); rr != nil {
					if !rr.Serializable {
						return false
					}
					ranges++
				} else if nt := o.GetRequestTxn(); nt == nil || !walk(nt) {
					return false
				}
			}
		}
		return true
	}
	return walk(r) && ranges > 0
}

// txnReadOnly reports whether r has only ranges on every branch, nested
// transactions included (one nested too deep counts as writing; txnOf
// refuses it anyway).
func txnReadOnly(r *pb.TxnRequest, depth int) bool {
	if r == nil || depth > 16 {
		return false
	}
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, o := range ops {
			if o.GetRequestRange() != nil {
				continue
			}
			if nt := o.GetRequestTxn(); nt == nil || !txnReadOnly(nt, depth+1) {
				return false
			}
		}
	}
	return true
}

// rangeAtRevision reports whether a range of r, or of a transaction
// nested in it, asks for a revision.
func rangeAtRevision(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, o := range ops {
			if rr := o.GetRequestRange(); rr != nil && rr.Revision != 0 {
				return true
			}
			if nt := o.GetRequestTxn(); nt != nil && rangeAtRevision(nt) {
				return true
			}
		}
	}
	return false
}

func txnOf(r *pb.TxnRequest, depth int) (*kv.EtcdTxn, error) {
	if len(r.Compare) > maxTxnOps || len(r.Success) > maxTxnOps || len(r.Failure) > maxTxnOps {
		return nil, rpctypes.ErrGRPCTooManyOps
	}
	if depth > 16 {
		return nil, status.Error(codes.InvalidArgument, "etcdserver: transactions nested more than 16 deep")
	}
	t := &kv.EtcdTxn{Compares: make([]kv.EtcdCompare, len(r.Compare))}
	for i, c := range r.Compare {
		if c == nil || len(c.Key) == 0 {
			return nil, rpctypes.ErrGRPCEmptyKey
		}
		kc := kv.EtcdCompare{Key: string(c.Key), End: string(c.RangeEnd)}
		switch c.Result {
		case pb.Compare_EQUAL:
			kc.Result = kv.EtcdEqual
		case pb.Compare_GREATER:
			kc.Result = kv.EtcdGreater
		case pb.Compare_LESS:
			kc.Result = kv.EtcdLess
		case pb.Compare_NOT_EQUAL:
			kc.Result = kv.EtcdNotEqual
		default:
			return nil, status.Errorf(codes.InvalidArgument, "etcdserver: unknown compare result %d", c.Result)
		}
		switch c.Target {
		case pb.Compare_VERSION:
			kc.Target, kc.Number = kv.EtcdTargetVersion, c.GetVersion()
		case pb.Compare_CREATE:
			kc.Target, kc.Number = kv.EtcdTargetCreate, c.GetCreateRevision()
		case pb.Compare_MOD:
			kc.Target, kc.Number = kv.EtcdTargetMod, c.GetModRevision()
		case pb.Compare_VALUE:
			kc.Target, kc.Value = kv.EtcdTargetValue, c.GetValue()
		case pb.Compare_LEASE:
			kc.Target, kc.Number = kv.EtcdTargetLease, c.GetLease()
		default:
			return nil, status.Errorf(codes.InvalidArgument, "etcdserver: unknown compare target %d", c.Target)
		}
		t.Compares[i] = kc
	}
	var err error
	if t.Success, err = opsOf(r.Success, depth); err != nil {
		return nil, err
	}
	if t.Failure, err = opsOf(r.Failure, depth); err != nil {
		return nil, err
	}
	return t, nil
}

func opsOf(ops []*pb.RequestOp, depth int) ([]kv.EtcdOp, error) {
	out := make([]kv.EtcdOp, len(ops))
	for i, o := range ops {
		var err error
		switch req := o.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			r := req.RequestRange
			switch {
			case r == nil || len(r.Key) == 0:
				return nil, rpctypes.ErrGRPCEmptyKey
			}
			if err := checkSort(r); err != nil {
				return nil, err
			}
			out[i] = kv.EtcdOp{Type: kv.EtcdRange, Key: string(r.Key), End: string(r.RangeEnd), Revision: r.Revision}
		case *pb.RequestOp_RequestPut:
			if req.RequestPut == nil {
				return nil, rpctypes.ErrGRPCEmptyKey
			}
			out[i], err = putOp(req.RequestPut)
		case *pb.RequestOp_RequestDeleteRange:
			if req.RequestDeleteRange == nil {
				return nil, rpctypes.ErrGRPCEmptyKey
			}
			out[i], err = deleteOp(req.RequestDeleteRange)
		case *pb.RequestOp_RequestTxn:
			if req.RequestTxn == nil {
				return nil, status.Error(codes.InvalidArgument, "etcdserver: empty nested transaction")
			}
			out[i].Type = kv.EtcdNested
			out[i].Txn, err = txnOf(req.RequestTxn, depth+1)
		default:
			return nil, status.Error(codes.InvalidArgument, fmt.Sprintf("etcdserver: transaction operation %d has no request", i))
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// txnResponse builds the response to r from the state machine's result.
func txnResponse(r *pb.TxnRequest, res *kv.EtcdTxnResult, h *pb.ResponseHeader) *pb.TxnResponse {
	ops := r.Failure
	if res.Succeeded {
		ops = r.Success
	}
	out := &pb.TxnResponse{Header: h, Succeeded: res.Succeeded, Responses: make([]*pb.ResponseOp, len(ops))}
	for i, o := range ops {
		got := res.Responses[i]
		switch req := o.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			rr := rangeResponse(req.RequestRange, got.Items)
			rr.Header = h
			out.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: rr}}
		case *pb.RequestOp_RequestPut:
			pr := &pb.PutResponse{Header: h}
			if len(got.Items) > 0 {
				pr.PrevKv = keyValue(got.Items[0], false)
			}
			out.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: pr}}
		case *pb.RequestOp_RequestDeleteRange:
			dr := &pb.DeleteRangeResponse{Header: h, Deleted: got.Deleted, PrevKvs: keyValues(got.Items)}
			out.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: dr}}
		case *pb.RequestOp_RequestTxn:
			tr := txnResponse(req.RequestTxn, got.Txn, h)
			out.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: tr}}
		}
	}
	return out
}

// Compact raises the floor of reads and watches to r.Revision on every
// member (kv.Store.Compact), dropping the history below it. It is
// applied when it returns, physical or not.
func (k *kvService) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	rev, err := k.s.cfg.Store.Compact(ctx, r.Revision)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.CompactionResponse{Header: k.s.header(rev)}, nil
}
