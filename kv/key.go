package kv

import (
	"unicode"
	"unicode/utf8"
)

// Three checks of keys, on purpose:
//
//   - checkKey is what Apply (and snapshot restore) accept as a key of
//     the state: any non-empty byte string within the key limit, as in
//     etcd, whose binary keys (NUL bytes, bytes >= 0x80) are written
//     through its API (Store.EtcdTxn). Keys are ordered by their bytes.
//   - checkTextKey is what Apply accepts as a name that becomes part of a
//     key or is shown as text (a workflow or node id, a lock's, an
//     election's or a queue's name): checkKey's rules plus valid UTF-8.
//   - checkRequestKey is what a request of our own APIs may name as a key
//     to write: checkTextKey's rules plus no control characters. It is
//     checked before anything is proposed (Store, and the HTTP and /v1/ws
//     APIs through ValidateKey), so a stricter rule here never changes
//     what a committed entry does.
//
// Apply's rules must give the same answer on every node and on every
// later version for an entry already in a log, or replaying the log would
// diverge from the state a snapshot holds. checkKey was made looser (it
// refused invalid UTF-8 before): that changes the outcome of no entry our
// code ever proposed, since every proposer checked checkRequestKey, which
// refuses invalid UTF-8, before proposing. A node of an older version
// still refuses a binary key that a newer one accepts, so a mixed cluster
// must not be sent any (docs/OPERATIONS.md, "Upgrades").

// ValidateKey reports whether key may be written by a request of the
// HTTP and /v1/ws APIs: non-empty, valid UTF-8, at most maxBytes bytes,
// and without control characters (Unicode category Cc: U+0000 to U+001F
// and U+007F to U+009F; a key with one cannot be shown, logged or put in a
// URL without surprise). The error wraps ErrInvalidKey and says what is
// wrong. Every Store method that writes a key checks it this way, except
// EtcdTxn (etcd's keys are any bytes; ValidateStoredKey), and so do the
// HTTP and /v1/ws APIs, so they all refuse the same keys.
func ValidateKey(key string, maxBytes int) error {
	if err := checkRequestKey(key, maxBytes); err != nil {
		return err
	}
	return nil
}

// ValidateStoredKey reports whether key may be a key of the state: any
// non-empty byte string of at most maxBytes bytes (etcd's rule). Reads
// and deletes take any such key, since the state may hold it (written
// through etcd's API); the error wraps ErrInvalidKey.
func ValidateStoredKey(key string, maxBytes int) error {
	if err := checkKey(key, maxBytes); err != nil {
		return err
	}
	return nil
}

// ValidatePrefix reports whether prefix may be listed or watched: any
// byte string of at most maxBytes bytes, since a key of the state may
// hold any bytes. The empty prefix (every key) is valid. The error wraps
// ErrInvalidKey.
func ValidatePrefix(prefix string, maxBytes int) error {
	if len(prefix) > maxBytes {
		return fail(ErrInvalidKey, "prefix of %d bytes exceeds %d", len(prefix), maxBytes)
	}
	return nil
}

// checkRequestKey is checkTextKey plus the rules of a key named by a request
// (see ValidateKey).
func checkRequestKey(key string, limit int) *applyError {
	if err := checkTextKey(key, limit); err != nil {
		return err
	}
	if i, r, ok := controlChar(key); ok {
		return fail(ErrInvalidKey, "key has the control character %U at byte %d", r, i)
	}
	return nil
}

// checkRequestID is checkID plus the rules of a key named by a request: a
// workflow or node id becomes part of a key.
func checkRequestID(what, id string, maxKey int) *applyError {
	if err := checkID(what, id, maxKey); err != nil {
		return err
	}
	if i, r, ok := controlChar(id); ok {
		return fail(ErrInvalidKey, "%s id has the control character %U at byte %d", what, r, i)
	}
	return nil
}

// controlChar returns the first control character (category Cc) of s,
// valid UTF-8, and its byte offset.
func controlChar(s string) (int, rune, bool) {
	for i, r := range s {
		// unicode.IsControl is exactly category Cc: C0, DEL and C1.
		if unicode.IsControl(r) {
			return i, r, true
		}
	}
	return 0, 0, false
}

// checkKey returns why Apply refuses key as a key of the state: empty or
// longer than limit bytes. Any bytes are allowed. See the comment at the
// top of this file before changing it.
func checkKey(key string, limit int) *applyError {
	switch {
	case key == "":
		return fail(ErrInvalidKey, "empty key")
	case len(key) > limit:
		return fail(ErrInvalidKey, "key of %d bytes exceeds %d", len(key), limit)
	}
	return nil
}

// checkTextKey returns why Apply refuses key as a name that is part of a key
// or shown as text: checkKey's reasons, or not valid UTF-8 (the rule
// checkKey had before binary keys; it never grows).
func checkTextKey(key string, limit int) *applyError {
	if err := checkKey(key, limit); err != nil {
		return err
	}
	if !utf8.ValidString(key) {
		return fail(ErrInvalidKey, "key is not valid UTF-8")
	}
	return nil
}
