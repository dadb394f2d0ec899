package api

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// watchFrame is a frame of the given elements.
func watchFrame(elems ...[]byte) []byte {
	b := AppendFrameHeader(nil, len(elems))
	for _, e := range elems {
		b = append(b, e...)
	}
	return b
}

// readWatchElement reads the one element of frame: its id and kind, and
// its events or its end.
func readWatchElement(t testing.TB, frame []byte) (id, kind uint64, resp WatchResponse, code, msg string, oldest int64, err error) {
	fr, err := NewFrameReader(frame)
	if err != nil {
		return 0, 0, resp, "", "", 0, err
	}
	defer fr.Release()
	count, _, err := fr.Header()
	if err != nil || count != 1 {
		return 0, 0, resp, "", "", 0, errors.Join(err, errors.New("want one element"))
	}
	id, kind, more, err := fr.ResponseHeader()
	if err != nil {
		return 0, 0, resp, "", "", 0, err
	}
	switch kind {
	case ResultWatchEvents:
		resp, err = fr.WatchEvents()
	case ResultWatchEnd:
		code, msg, oldest, err = fr.WatchEnd()
	default:
		t.Fatalf("kind %d", kind)
	}
	if err == nil {
		err = fr.Skip(more)
	}
	return id, kind, resp, code, msg, oldest, err
}

func TestWatchElementsRoundTrip(t *testing.T) {
	events := []Event{
		{Type: EventPut, Item: Item{Key: "a/1", Value: []byte(`{"x":1}`), Revision: 7, CreateRevision: 3, Version: 2}},
		{Type: EventDelete, Item: Item{Key: "a/\xff", Revision: 7}},
		{Type: EventPut, Item: Item{Key: "a/2", Value: []byte(`"` + strings.Repeat("v", 300) + `"`), Revision: 9, CreateRevision: 9, Version: 1}},
	}
	id, kind, resp, _, _, _, err := readWatchElement(t, watchFrame(AppendWatchEvents(nil, 1<<40, 12, events)))
	if err != nil || id != 1<<40 || kind != ResultWatchEvents || resp.Revision != 12 || !reflect.DeepEqual(resp.Events, events) {
		t.Fatalf("events: %d %d %+v %v", id, kind, resp, err)
	}
	// A progress report.
	_, _, resp, _, _, _, err = readWatchElement(t, watchFrame(AppendWatchEvents(nil, 3, 40, nil)))
	if err != nil || resp.Revision != 40 || len(resp.Events) != 0 {
		t.Fatalf("progress: %+v %v", resp, err)
	}
	// Ends, with and without an oldest revision.
	_, kind, _, code, msg, oldest, err := readWatchElement(t, watchFrame(AppendWatchEnd(nil, 3, CodeCompacted, "gone", 77)))
	if err != nil || kind != ResultWatchEnd || code != CodeCompacted || msg != "gone" || oldest != 77 {
		t.Fatalf("end: %s %s %d %v", code, msg, oldest, err)
	}
	_, _, _, code, _, oldest, err = readWatchElement(t, watchFrame(AppendWatchEnd(nil, 3, CodeUnavailable, "bye", 0)))
	if err != nil || code != CodeUnavailable || oldest != 0 {
		t.Fatalf("end: %s %d %v", code, oldest, err)
	}
	// A compacted answer carries the oldest revision; an older reader of
	// the error payload ([code, message]) skips it.
	b, _ := AppendResponse(nil, OpWatch, &Response{ID: 5, Code: CodeCompacted, Message: "m", OldestRevision: 6})
	fr, _ := NewFrameReader(watchFrame(b))
	defer fr.Release()
	_, _, _ = fr.Header()
	_, k, _, _ := fr.ResponseHeader()
	if r, err := fr.Payload(OpWatch, k); err != nil || r.Code != CodeCompacted || r.OldestRevision != 6 {
		t.Fatalf("compacted answer: %+v %v", r, err)
	}
}

// TestWatchElementsRefused: a pushed element that breaks the watch's
// contract is a typed error (ErrField), never a panic or a silent gap.
func TestWatchElementsRefused(t *testing.T) {
	put := func(rev int64) Event {
		return Event{Type: EventPut, Item: Item{Key: "k", Value: []byte("1"), Revision: rev, CreateRevision: rev, Version: 1}}
	}
	badType := AppendWatchEvents(nil, 1, 5, []Event{put(5)})
	badType[len(badType)-len(AppendWatchEvent(nil, &[]Event{put(5)}[0]))+1] = 9 // the type
	withValue := Event{Type: EventDelete, Item: Item{Key: "k", Value: []byte("1"), Revision: 5}}
	for name, elem := range map[string][]byte{
		"events going back":       AppendWatchEvents(nil, 1, 9, []Event{put(6), put(5)}),
		"event past the progress": AppendWatchEvents(nil, 1, 5, []Event{put(6)}),
		"revision 0":              AppendWatchEvents(nil, 1, 5, []Event{put(0)}),
		"negative progress":       AppendWatchEvents(nil, 1, -1, nil),
		"unknown type":            badType,
		"delete with a value":     AppendWatchEvents(nil, 1, 5, []Event{withValue}),
	} {
		if _, _, _, _, _, _, err := readWatchElement(t, watchFrame(elem)); !errors.Is(err, ErrField) {
			t.Errorf("%s: %v, want ErrField", name, err)
		}
	}
}

// FuzzWatchElements checks that the watch element decoders never panic,
// and that what they accept encodes back to what decodes the same.
func FuzzWatchElements(f *testing.F) {
	f.Add(watchFrame(AppendWatchEvents(nil, 1, 9, []Event{
		{Type: EventPut, Item: Item{Key: "a", Value: []byte("1"), Revision: 8, CreateRevision: 8, Version: 1}},
		{Type: EventDelete, Item: Item{Key: "b", Revision: 9}},
	})))
	f.Add(watchFrame(AppendWatchEnd(nil, 2, CodeCompacted, "m", 4)))
	f.Add(watchFrame(AppendWatchEvents(nil, 3, 5, nil)))
	twice := []Event{{Type: EventPut, Item: Item{Key: "k", Value: []byte("1"), Revision: 4, CreateRevision: 4, Version: 1}}}
	f.Add(watchFrame(AppendWatchEvents(nil, 4, 4, twice), AppendWatchEvents(nil, 5, 6, twice)))
	f.Add([]byte("\x92\x01\x91\x93\x01\x02\x92\x05\x91\x96\x01\xa1k\xc0\x05\x05\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := NewFrameReader(b)
		if err != nil {
			return
		}
		defer fr.Release()
		count, _, err := fr.Header()
		if err != nil {
			return
		}
		var cache WatchEventsCache // elements that repeat events share them
		for range count {
			id, kind, more, err := fr.ResponseHeader()
			if err != nil {
				return
			}
			switch kind {
			case ResultWatchEvents:
				resp, err := fr.WatchEventsCached(&cache)
				if err != nil {
					return
				}
				_, _, again, _, _, _, err := readWatchElement(t, watchFrame(AppendWatchEvents(nil, id, resp.Revision, resp.Events)))
				if err != nil || again.Revision != resp.Revision || len(again.Events) != len(resp.Events) {
					t.Fatalf("re-encoded %+v: %+v %v", resp, again, err)
				}
			case ResultWatchEnd:
				code, msg, oldest, err := fr.WatchEnd()
				if err != nil {
					return
				}
				_, _, _, c2, m2, o2, err := readWatchElement(t, watchFrame(AppendWatchEnd(nil, id, code, msg, oldest)))
				if err != nil || c2 != code || (oldest > 0 && o2 != oldest) || (m2 != msg && strings.ToValidUTF8(msg, "\uFFFD") != m2) {
					t.Fatalf("re-encoded end %q %q %d: %q %q %d %v", code, msg, oldest, c2, m2, o2, err)
				}
			default:
				return
			}
			if fr.Skip(more) != nil {
				return
			}
		}
	})
}

// TestWatchEventsCacheSharesIdenticalEvents: elements that carry the same
// encoded events (to different watches, at different progress) decode
// to one shared slice; different events are decoded anew; a cached
// events run is still checked against the element's progress.
func TestWatchEventsCacheSharesIdenticalEvents(t *testing.T) {
	evs := []Event{
		{Type: EventPut, Item: Item{Key: "a/1", Value: []byte(`1`), Revision: 7, CreateRevision: 7, Version: 1}},
		{Type: EventDelete, Item: Item{Key: "a/2", Revision: 8}},
	}
	other := []Event{{Type: EventPut, Item: Item{Key: "a/3", Value: []byte(`2`), Revision: 9, CreateRevision: 9, Version: 1}}}
	frame := watchFrame(AppendWatchEvents(nil, 1, 8, evs), AppendWatchEvents(nil, 2, 9, evs),
		AppendWatchEvents(nil, 3, 9, other), AppendWatchEvents(nil, 4, 7, evs))
	fr, err := NewFrameReader(frame)
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Release()
	if n, _, err := fr.Header(); err != nil || n != 4 {
		t.Fatalf("header: %d %v", n, err)
	}
	var cache WatchEventsCache
	var got []WatchResponse
	for i := range 4 {
		id, kind, more, err := fr.ResponseHeader()
		if err != nil || id != uint64(i+1) || kind != ResultWatchEvents {
			t.Fatalf("element %d: %d %d %v", i, id, kind, err)
		}
		resp, err := fr.WatchEventsCached(&cache)
		if i == 3 {
			// evs end at revision 8, past this element's progress 7.
			if !errors.Is(err, ErrField) {
				t.Fatalf("cached events past the progress: %v", err)
			}
			break
		}
		if err != nil || fr.Skip(more) != nil {
			t.Fatalf("element %d: %v", i, err)
		}
		got = append(got, resp)
	}
	if !reflect.DeepEqual(got[0].Events, evs) || !reflect.DeepEqual(got[1].Events, evs) || !reflect.DeepEqual(got[2].Events, other) ||
		got[0].Revision != 8 || got[1].Revision != 9 || got[2].Revision != 9 {
		t.Fatalf("decoded %+v", got)
	}
	if &got[0].Events[0] != &got[1].Events[0] {
		t.Error("the same encoded events were decoded twice")
	}
}
