package kv

import (
	"unicode"
	"unicode/utf8"
)

// Two checks of keys, on purpose:
//
//   - checkKey is what Apply (and snapshot restore) accept: non-empty,
//     valid UTF-8, within the key limit. It never grows: an entry
//     committed under an older rule must apply the same way on every node
//     and on every later version, or replaying a log would diverge from
//     the state a snapshot holds.
//   - checkRequestKey is what a request may name: checkKey's rules plus
//     no control characters. It is checked before anything is proposed
//     (Store, and the HTTP and /v1/ws APIs through ValidateKey), so a
//     stricter rule here never changes what a committed entry does.

// ValidateKey reports whether key may be named by a request: non-empty,
// valid UTF-8, at most maxBytes bytes, and without control characters
// (Unicode category Cc: U+0000 to U+001F and U+007F to U+009F; a key with
// one cannot be shown, logged or put in a URL without surprise). The
// error wraps ErrInvalidKey and says what is wrong. Every Store method
// that takes a key checks it this way, and so do the HTTP and /v1/ws
// APIs, so they all refuse the same keys.
//
// State loaded from a snapshot or a log may hold keys this refuses
// (written before the rule); they are kept and listed, but cannot be named
// by a request.
func ValidateKey(key string, maxBytes int) error {
	if err := checkRequestKey(key, maxBytes); err != nil {
		return err
	}
	return nil
}

// ValidatePrefix reports whether prefix may be listed or watched: valid
// UTF-8, at most maxBytes bytes, and without control characters, since no
// key that a request may write starts with one. The empty prefix (every
// key) is valid. The error wraps ErrInvalidKey.
func ValidatePrefix(prefix string, maxBytes int) error {
	switch {
	case len(prefix) > maxBytes:
		return fail(ErrInvalidKey, "prefix of %d bytes exceeds %d", len(prefix), maxBytes)
	case !utf8.ValidString(prefix):
		return fail(ErrInvalidKey, "prefix is not valid UTF-8")
	}
	if i, r, ok := controlChar(prefix); ok {
		return fail(ErrInvalidKey, "prefix has the control character %U at byte %d", r, i)
	}
	return nil
}

// checkRequestKey is checkKey plus the rules of a key named by a request
// (see ValidateKey).
func checkRequestKey(key string, limit int) *applyError {
	if err := checkKey(key, limit); err != nil {
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

// checkKey returns why Apply refuses key: empty, longer than limit bytes,
// or not valid UTF-8. See the comment at the top of this file before
// making it stricter.
func checkKey(key string, limit int) *applyError {
	switch {
	case key == "":
		return fail(ErrInvalidKey, "empty key")
	case len(key) > limit:
		return fail(ErrInvalidKey, "key of %d bytes exceeds %d", len(key), limit)
	case !utf8.ValidString(key):
		return fail(ErrInvalidKey, "key is not valid UTF-8")
	}
	return nil
}
