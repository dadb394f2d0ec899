package storage

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// keyClusterID holds the id of the cluster this store belongs to (see
// consensus.ClusterIDStore): 8 bytes, big-endian, in a checksummed record.
var keyClusterID = []byte{prefixClusterID}

const prefixClusterID byte = 0x05

func encodeClusterID(id uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	return encodeRecord(b[:])
}

func decodeClusterID(value []byte) (uint64, error) {
	b, err := decodeRecord(value)
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("cluster id record of %d bytes, want 8: %w", len(b), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(b), nil
}

// ClusterID returns the stored cluster id, or 0 if none is stored. A
// damaged record is an error wrapping ErrCorrupt.
func (p *Pebble) ClusterID() (uint64, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if err := p.usable(); err != nil {
		return 0, err
	}
	v, ok, err := p.get(keyClusterID)
	if err != nil || !ok {
		return 0, err
	}
	id, err := decodeClusterID(v)
	if err != nil {
		return 0, p.corrupt("cluster id", err)
	}
	return id, nil
}

// SetClusterID durably stores id.
func (p *Pebble) SetClusterID(id uint64) (err error) {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.catchFatal(&err, true)
	if err := p.usable(); err != nil {
		return err
	}
	if err := p.db.Set(keyClusterID, encodeClusterID(id), pebble.Sync); err != nil {
		return p.writeFailed(err)
	}
	return nil
}

// ClusterID returns the stored cluster id, or 0 if none is stored.
func (m *Memory) ClusterID() (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.clusterID, nil
}

// SetClusterID stores id.
func (m *Memory) SetClusterID(id uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clusterID = id
	return nil
}
