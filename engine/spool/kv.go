package spool

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// KV is a small key-value view of the spool's database, under "k/", apart
// from messages and counters. The suppression list (fbl/suppress.Local)
// keeps its entries here, so that one node needs no other store. Values are
// not sealed by the spool cipher: they hold addresses and reasons, not mail.
type KV struct{ s *Store }

const kvPrefix = "k/"

// KV returns the key-value view of s.
func (s *Store) KV() *KV { return &KV{s: s} }

func kvKey(key string) []byte { return append([]byte(kvPrefix), key...) }

// Get returns the value of key, or nil and no error when it is absent.
func (kv *KV) Get(key string) ([]byte, error) {
	if err := kv.s.acquire(); err != nil {
		return nil, err
	}
	defer kv.s.release()
	v, closer, err := kv.s.db.Get(kvKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: kv get: %w", err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

// Set stores v under key and syncs it before returning.
func (kv *KV) Set(key string, v []byte) error {
	if err := kv.s.acquire(); err != nil {
		return err
	}
	defer kv.s.release()
	if err := kv.s.db.Set(kvKey(key), v, pebble.Sync); err != nil {
		return fmt.Errorf("spool: kv set: %w", err)
	}
	return nil
}

// Delete removes key (synced); an absent key is not an error.
func (kv *KV) Delete(key string) error {
	if err := kv.s.acquire(); err != nil {
		return err
	}
	defer kv.s.release()
	if err := kv.s.db.Delete(kvKey(key), pebble.Sync); err != nil {
		return fmt.Errorf("spool: kv delete: %w", err)
	}
	return nil
}

// Scan calls fn for each key with the prefix, in key order, and stops at
// the first error fn returns. fn must not call the KV and must copy v if it
// keeps it.
func (kv *KV) Scan(prefix string, fn func(key string, v []byte) error) error {
	if err := kv.s.acquire(); err != nil {
		return err
	}
	defer kv.s.release()
	lo := kvKey(prefix)
	it, err := kv.s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return fmt.Errorf("spool: kv scan: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(string(it.Key()[len(kvPrefix):]), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("spool: kv scan: %w", err)
	}
	return nil
}

// prefixEnd is the smallest key above every key that starts with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
