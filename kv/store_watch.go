package kv

import "context"

// Watch starts a watcher of the keys starting with prefix from revision
// fromRevision on; see Machine.Watch. With fromRevision 0 it first does a
// linearizable read (bounded by ctx), so the watch starts after every
// write acknowledged before the call: "from now" means the same on every
// node. ctx bounds that read and the watch's life.
//
// To move a watch to another node, watch there from the last response's
// Revision + 1: revisions are the same on every node, and a node that has
// not applied that far yet waits for it.
//
// A prefix that ValidatePrefix refuses is ErrInvalidKey.
func (s *Store) Watch(ctx context.Context, prefix string, fromRevision int64) (*Watcher, error) {
	if err := ValidatePrefix(prefix, s.machine.maxKeyBytes); err != nil {
		return nil, err
	}
	if fromRevision == 0 {
		if err := s.node.LinearizableRead(ctx); err != nil {
			return nil, err
		}
	}
	return s.machine.Watch(ctx, prefix, fromRevision)
}

// WatchGrouped is Watch for a watcher of group (WatchGroup), which the
// caller serves: with fromRevision 0 it first does a linearizable read,
// bounded by ctx, which does not bound the watch; Stop releases it.
func (s *Store) WatchGrouped(ctx context.Context, group *WatchGroup, prefix string, fromRevision int64) (GroupWatcher, error) {
	if err := ValidatePrefix(prefix, s.machine.maxKeyBytes); err != nil {
		return GroupWatcher{}, err
	}
	if fromRevision == 0 {
		if err := s.node.LinearizableRead(ctx); err != nil {
			return GroupWatcher{}, err
		}
	}
	return s.machine.WatchGrouped(group, prefix, fromRevision)
}
