package kv

// watchHub keeps recent events for watchers. The machine calls it with
// its lock held, in revision order.
type watchHub struct{}

// publish records the events of one applied command.
func (h *watchHub) publish(evs ...Event) {}

// reset forgets all history: the state was replaced by a snapshot at
// revision rev, so events at or below rev are no longer available.
func (h *watchHub) reset(rev int64) {}
