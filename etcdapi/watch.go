package etcdapi

import pb "go.etcd.io/etcd/api/v3/etcdserverpb"

type watchService struct {
	pb.UnimplementedWatchServer
	s *Server
}
