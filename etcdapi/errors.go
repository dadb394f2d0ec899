package etcdapi

import (
	"context"
	"errors"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/unrdf/consensus"
	"github.com/unrdf/consensus/api"
	"github.com/unrdf/consensus/kv"
)

// toGRPC maps an error of the store, the lessor or the node to the gRPC
// error etcd answers in the same case (rpctypes), so that clientv3
// retries what etcd would have it retry and fails on what it would fail
// on. Errors etcd has no counterpart for keep their text under a fitting
// code.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, kv.ErrKeyNotFound):
		return rpctypes.ErrGRPCKeyNotFound
	case errors.Is(err, kv.ErrLeaseNotFound):
		return rpctypes.ErrGRPCLeaseNotFound
	case errors.Is(err, api.ErrLeaseExists):
		return rpctypes.ErrGRPCLeaseExist
	case errors.Is(err, kv.ErrInvalidTTL):
		return rpctypes.ErrGRPCLeaseTTLTooLarge
	case errors.Is(err, kv.ErrCompacted):
		return rpctypes.ErrGRPCCompacted
	case errors.Is(err, kv.ErrFutureRevision):
		return rpctypes.ErrGRPCFutureRev
	case errors.Is(err, kv.ErrValueTooLarge), errors.Is(err, consensus.ErrTooLarge):
		return rpctypes.ErrGRPCRequestTooLarge
	case errors.Is(err, kv.ErrStateFull), errors.Is(err, kv.ErrTooManyLeases):
		return status.Error(codes.ResourceExhausted, "etcdserver: "+err.Error())
	case errors.Is(err, kv.ErrInvalidBatch):
		if strings.Contains(err.Error(), "duplicate key given in txn request") {
			return rpctypes.ErrGRPCDuplicateKey
		}
		return status.Error(codes.InvalidArgument, "etcdserver: "+err.Error())
	case errors.Is(err, kv.ErrInvalidKey), errors.Is(err, kv.ErrInvalidValue), errors.Is(err, kv.ErrInvalidRevision):
		return status.Error(codes.InvalidArgument, "etcdserver: "+err.Error())
	case errors.Is(err, consensus.ErrNoLeader), errors.Is(err, consensus.ErrNotLeader):
		return rpctypes.ErrGRPCNoLeader
	case errors.Is(err, consensus.ErrLeadershipLost):
		return rpctypes.ErrGRPCLeaderChanged
	case errors.Is(err, consensus.ErrStopped), errors.Is(err, consensus.ErrRemoved):
		return rpctypes.ErrGRPCStopped
	case errors.Is(err, consensus.ErrStorageStalled):
		// Unavailable: clientv3 retries on another member.
		return status.Error(codes.Unavailable, "etcdserver: "+err.Error())
	case errors.Is(err, consensus.ErrTimeout), errors.Is(err, api.ErrOutcomeUnknown):
		return rpctypes.ErrGRPCTimeout
	case errors.Is(err, context.Canceled):
		return rpctypes.ErrGRPCCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return rpctypes.ErrGRPCDeadlineExceeded
	case errors.Is(err, consensus.ErrUnknownMember):
		return rpctypes.ErrGRPCMemberNotFound
	case errors.Is(err, consensus.ErrMemberConflict):
		return status.Error(codes.FailedPrecondition, "etcdserver: "+err.Error())
	case errors.Is(err, consensus.ErrInvalidMember):
		return status.Error(codes.InvalidArgument, "etcdserver: "+err.Error())
	case errors.Is(err, api.ErrUnauthorized):
		return rpctypes.ErrGRPCInvalidAuthToken
	case errors.Is(err, api.ErrForbidden):
		return rpctypes.ErrGRPCPermissionDenied
	case errors.Is(err, api.ErrUnavailable):
		return status.Error(codes.Unavailable, "etcdserver: "+err.Error())
	}
	return status.Error(codes.Unknown, "etcdserver: "+err.Error())
}

// unimplemented answers an RPC or option this server does not support.
func unimplemented(what string) error {
	return status.Error(codes.Unimplemented, "consensus: "+what+" is not supported (see docs/ETCD.md)")
}
