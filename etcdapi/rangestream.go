package etcdapi

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Chunk bounds of RangeStream: a chunk is sent once it holds this many
// keys or this many bytes of keys and values, so a range of any size is
// converted to etcd's messages a chunk at a time. A single key and value
// larger than the byte bound makes a chunk of its own.
const (
	streamChunkKeys  = 1000
	streamChunkBytes = 1 << 20
)

// RangeStream is Range answered in chunks (etcd 3.7): the keys of one
// read at one revision, split over messages in order, with the header,
// more and count on the last one only, so that merging the chunks gives
// Range's answer. The read is the same as Range's (linearizable unless
// serializable, at the current or an older revision); what streaming
// bounds is the answer's messages, not the read: the range's items are
// gathered first, as for Range, and only their etcd copies are made a
// chunk at a time.
func (k *kvService) RangeStream(r *pb.RangeRequest, stream pb.KV_RangeStreamServer) error {
	items, rev, err := k.readRange(stream.Context(), r)
	if err != nil {
		return err
	}
	last := &pb.RangeResponse{Header: k.s.header(rev), Count: int64(len(items))}
	if r.CountOnly {
		return stream.Send(&pb.RangeStreamResponse{RangeResponse: last})
	}
	kept, more := rangeSelect(r, items)
	last.More = more
	var chunk []*mvccpb.KeyValue
	size := 0
	for i, it := range kept {
		kvp := keyValue(it, r.KeysOnly)
		chunk = append(chunk, kvp)
		size += len(kvp.Key) + len(kvp.Value)
		if i == len(kept)-1 {
			break // the last chunk carries the header
		}
		if len(chunk) >= streamChunkKeys || size >= streamChunkBytes {
			if err := stream.Send(&pb.RangeStreamResponse{RangeResponse: &pb.RangeResponse{Kvs: chunk}}); err != nil {
				return err
			}
			chunk, size = nil, 0
		}
	}
	last.Kvs = chunk
	return stream.Send(&pb.RangeStreamResponse{RangeResponse: last})
}
