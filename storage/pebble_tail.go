package storage

import (
	"go.etcd.io/raft/v3/raftpb"
)

// Bounds of the tail cache.
const (
	maxTailEntries = 8192
	maxTailBytes   = 16 << 20
)

// cacheTail adds entries, which start at most one past the cached tail and
// replace whatever they overlap, to the tail cache. Callers hold mu.
func (p *Pebble) cacheTail(entries []*raftpb.Entry) {
	first := entries[0].GetIndex()
	if n := len(p.tail); n > 0 {
		start := p.tail[0].GetIndex()
		switch {
		case first < start || first > start+uint64(n):
			p.tail, p.tailBytes = p.tail[:0], 0
		default:
			for _, e := range p.tail[first-start:] {
				p.tailBytes -= entryCost(e)
			}
			clear(p.tail[first-start:])
			p.tail = p.tail[:first-start]
		}
	}
	for _, e := range entries {
		p.tail = append(p.tail, e)
		p.tailBytes += entryCost(e)
	}
	drop := 0
	for len(p.tail)-drop > maxTailEntries || (p.tailBytes > maxTailBytes && len(p.tail)-drop > 1) {
		p.tailBytes -= entryCost(p.tail[drop])
		drop++
	}
	if drop > 0 {
		// Copy down rather than reslice, so the backing array does not
		// grow without bound.
		n := copy(p.tail, p.tail[drop:])
		clear(p.tail[n:])
		p.tail = p.tail[:n]
	}
}

// dropTailBelow forgets cached entries below index. Callers hold mu.
func (p *Pebble) dropTailBelow(index uint64) {
	if len(p.tail) == 0 || p.tail[0].GetIndex() >= index {
		return
	}
	k := min(index-p.tail[0].GetIndex(), uint64(len(p.tail)))
	for _, e := range p.tail[:k] {
		p.tailBytes -= entryCost(e)
	}
	n := copy(p.tail, p.tail[k:])
	clear(p.tail[n:])
	p.tail = p.tail[:n]
}

// cached returns the cached entry at index, if any. Callers hold mu.
func (p *Pebble) cached(index uint64) (*raftpb.Entry, bool) {
	if len(p.tail) == 0 || index < p.tail[0].GetIndex() || index > p.last {
		return nil, false
	}
	return p.tail[index-p.tail[0].GetIndex()], true
}

// entryCost approximates an entry's memory for the cache bound.
func entryCost(e *raftpb.Entry) int { return len(e.GetData()) + 64 }
