package api

import (
	"bytes"
	"fmt"
	"io"
	"math"
)

// Watches on /v1/ws. A watch request [id, 27, prefix?, fromRevision?] is
// answered [id, 0, startRevision] (or an error: compacted with the oldest
// revision as a third element); from then on the server pushes elements
// tagged with the watch's id, the request's, in the same frames as
// answers:
//
//	[id, 2, [revision, [event, ...]]]    events, or with none a progress report
//	[id, 3, [code, message, oldest?]]    the watch ended (compacted: oldest set)
//
//	event = [type, key, value bin | nil, revision, createRevision, version]
//
// revision is the watch's progress: every matching event at or below it
// has been pushed. Events come in revision order without gap or repeat,
// and the events of one revision (one command) are never split between
// elements. [id, 28, watchID] cancels a watch: its answer comes after the
// watch's last element.

// Kinds of the elements a server pushes for a watch: the second element,
// after the watch's id, where an answer has ResultOK or ResultError.
const (
	ResultWatchEvents = 2
	ResultWatchEnd    = 3
)

// Bounds of a watch event's encoding, for a server that fills frames.
const (
	// WatchEventOverhead bounds what AppendWatchEvents takes for one
	// event beyond its key and value.
	WatchEventOverhead = 48
	// WatchElementOverhead bounds what AppendWatchEvents takes for an
	// element beyond its events.
	WatchElementOverhead = 32
)

// AppendWatchEvents appends the pushed element [watch, 2, [revision,
// [event, ...]]]: events of a watch and its progress.
func AppendWatchEvents(b []byte, watch uint64, revision int64, events []Event) []byte {
	b = AppendWatchEventsHeader(b, watch, revision, len(events))
	for i := range events {
		b = AppendWatchEvent(b, &events[i])
	}
	return b
}

// AppendWatchEventsHeader appends what comes before n events appended
// with AppendWatchEvent in a ResultWatchEvents element: a server that
// sends the same events to several watches encodes them once.
func AppendWatchEventsHeader(b []byte, watch uint64, revision int64, n int) []byte {
	b = AppendArrayHeader(b, 3)
	b = AppendUint(b, watch)
	b = AppendUint(b, ResultWatchEvents)
	b = AppendArrayHeader(b, 2)
	b = AppendInt(b, revision)
	return AppendArrayHeader(b, n)
}

// AppendWatchEvent appends one event: [type, key, value bin | nil,
// revision, createRevision, version].
func AppendWatchEvent(b []byte, ev *Event) []byte {
	b = AppendArrayHeader(b, 6)
	b = AppendUint(b, uint64(ev.Type))
	b = AppendStr(b, ev.Item.Key)
	b = appendBinOrNil(b, ev.Item.Value)
	b = AppendInt(b, ev.Item.Revision)
	b = AppendInt(b, ev.Item.CreateRevision)
	return AppendInt(b, ev.Item.Version)
}

// AppendWatchEnd appends the pushed element [watch, 3, [code, message,
// oldest?]]: the watch ended; oldest (set with CodeCompacted) is the
// oldest revision a watch can start from.
func AppendWatchEnd(b []byte, watch uint64, code, message string, oldest int64) []byte {
	b = AppendArrayHeader(b, 3)
	b = AppendUint(b, watch)
	b = AppendUint(b, ResultWatchEnd)
	return appendError(b, code, message, oldest)
}

// WatchEvents reads the payload of a ResultWatchEvents element. It
// refuses, with an error wrapping ErrField, an event of an unknown type,
// revisions that are not positive, that go back, or that pass the
// element's progress revision.
func (fr *FrameReader) WatchEvents() (WatchResponse, error) { return fr.WatchEventsCached(nil) }

// WatchEventsCache lets a reader of watch elements decode once the events
// that several elements carry byte for byte: a server sends the same
// events to every watch of a prefix. The events it hands out are shared
// between the responses: do not modify them. The zero value is ready.
type WatchEventsCache struct {
	raw    []byte // the encoded events array last decoded (a copy)
	events []Event
}

// WatchEventsCached is WatchEvents that takes the events from c when the
// element's encoded events are those c decoded last, and keeps them in c
// otherwise (c nil: WatchEvents).
func (fr *FrameReader) WatchEventsCached(c *WatchEventsCache) (WatchResponse, error) {
	var resp WatchResponse
	r := &fr.r
	n, err := r.arrayAtLeast(2)
	if err != nil {
		return resp, err
	}
	if resp.Revision, err = r.int(); err != nil {
		return resp, err
	}
	// The decoder reads the frame's bytes.Reader directly (an
	// io.ByteScanner: no read-ahead), so the reader's offset is its own.
	start := fr.offset()
	var bad error
	if c != nil && len(c.raw) > 0 && bytes.HasPrefix(fr.b[start:], c.raw) {
		if _, err := r.src.Seek(int64(len(c.raw)), io.SeekCurrent); err != nil {
			return resp, err
		}
		resp.Events = c.events
	} else {
		if resp.Events, bad, err = r.watchEvents(); err != nil {
			return resp, err
		}
		if c != nil && bad == nil && len(resp.Events) > 0 {
			c.raw = append(c.raw[:0], fr.b[start:fr.offset()]...)
			c.events = resp.Events
		}
	}
	if err := r.skip(n - 2); err != nil {
		return resp, err
	}
	if k := len(resp.Events); bad == nil && k > 0 && resp.Events[k-1].Item.Revision > resp.Revision {
		bad = fmt.Errorf("%w: event %d at revision %d past the progress %d", ErrField, k-1, resp.Events[k-1].Item.Revision, resp.Revision)
	}
	if bad == nil && resp.Revision < 0 {
		bad = fmt.Errorf("%w: progress revision %d is negative", ErrField, resp.Revision)
	}
	return resp, bad
}

// offset is the reader's position in the frame.
func (fr *FrameReader) offset() int { return int(fr.r.src.Size()) - fr.r.src.Len() }

// watchEvents reads [event, ...]: bad (wrapping ErrField) when they are
// out of order; err when the frame cannot be read on.
func (r *reader) watchEvents() (events []Event, bad, err error) {
	count, err := r.arrayLen()
	if err != nil {
		return nil, nil, err
	}
	if count > 0 {
		events = make([]Event, count)
	}
	for i := range events {
		ev := &events[i]
		if err := r.watchEvent(ev); err != nil {
			// A field of the wrong type leaves the event half read: stop.
			return nil, nil, fmt.Errorf("event %d: %w", i, err)
		}
		if i > 0 && bad == nil && ev.Item.Revision < events[i-1].Item.Revision {
			bad = fmt.Errorf("%w: event %d at revision %d after %d: out of order", ErrField, i, ev.Item.Revision, events[i-1].Item.Revision)
		}
	}
	return events, bad, nil
}

// watchEvent reads [type, key, value?, revision, createRevision, version,
// ...].
func (r *reader) watchEvent(ev *Event) error {
	n, err := r.arrayAtLeast(6)
	if err != nil {
		return err
	}
	typ, err := r.uint()
	if err != nil {
		return err
	}
	if ev.Item.Key, err = r.str(); err != nil {
		return err
	}
	if null, err := r.isNil(); err != nil {
		return err
	} else if !null {
		if ev.Item.Value, err = r.bin(); err != nil {
			return err
		}
	}
	if ev.Item.Revision, err = r.int(); err != nil {
		return err
	}
	if ev.Item.CreateRevision, err = r.int(); err != nil {
		return err
	}
	if ev.Item.Version, err = r.int(); err != nil {
		return err
	}
	if err := r.skip(n - 6); err != nil {
		return err
	}
	switch {
	case typ != uint64(EventPut) && typ != uint64(EventDelete):
		return fmt.Errorf("%w: event type %d, want 1 (put) or 2 (delete)", ErrField, typ)
	case EventType(typ) == EventDelete && ev.Item.Value != nil:
		return fmt.Errorf("%w: a delete event with a value", ErrField)
	case ev.Item.Revision < 1 || ev.Item.CreateRevision < 0 || ev.Item.Version < 0 || ev.Item.Revision == math.MaxInt64:
		return fmt.Errorf("%w: event revisions %d/%d/%d out of range", ErrField,
			ev.Item.Revision, ev.Item.CreateRevision, ev.Item.Version)
	}
	ev.Type = EventType(typ)
	return nil
}

// WatchEnd reads the payload of a ResultWatchEnd element: why the watch
// ended, and for CodeCompacted the oldest revision a watch can start
// from.
func (fr *FrameReader) WatchEnd() (code, message string, oldest int64, err error) {
	resp, err := fr.Payload(0, ResultError)
	return resp.Code, resp.Message, resp.OldestRevision, err
}
