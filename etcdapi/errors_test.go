package etcdapi

import (
	"context"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

func TestToGRPC(t *testing.T) {
	cases := []struct {
		err  error
		want error
		code codes.Code
	}{
		{kv.ErrKeyNotFound, rpctypes.ErrGRPCKeyNotFound, 0},
		{fmt.Errorf("x: %w", kv.ErrLeaseNotFound), rpctypes.ErrGRPCLeaseNotFound, 0},
		{consensus.ErrNoLeader, rpctypes.ErrGRPCNoLeader, 0},
		{consensus.ErrTimeout, rpctypes.ErrGRPCTimeout, 0},
		{consensus.ErrStorageStalled, nil, codes.Unavailable},
		{context.DeadlineExceeded, rpctypes.ErrGRPCDeadlineExceeded, 0},
		{kv.ErrValueTooLarge, rpctypes.ErrGRPCRequestTooLarge, 0},
		{kv.ErrStateFull, nil, codes.ResourceExhausted},
		{kv.ErrInvalidKey, nil, codes.InvalidArgument},
		{fmt.Errorf("kv: duplicate key given in txn request: %w", kv.ErrInvalidBatch), rpctypes.ErrGRPCDuplicateKey, 0},
		{api.ErrForbidden, rpctypes.ErrGRPCPermissionDenied, 0},
		{fmt.Errorf("something else"), nil, codes.Unknown},
	}
	for _, c := range cases {
		got := toGRPC(c.err)
		if c.want != nil && got != c.want {
			t.Errorf("toGRPC(%v) = %v, want %v", c.err, got, c.want)
		}
		if c.want == nil && status.Code(got) != c.code {
			t.Errorf("toGRPC(%v) = %v, want code %v", c.err, got, c.code)
		}
	}
}
