package suppress

import (
	"sort"
	"strings"
	"sync"
)

// KV is the storage Local persists to. The spool implements it on its
// pebble database; NewMemKV is an in-memory one for tests and tools.
type KV interface {
	// Get returns the value of key, or nil and no error if it is absent.
	Get(key string) ([]byte, error)
	// Set stores v under key durably before returning.
	Set(key string, v []byte) error
	// Delete removes key; deleting an absent key is not an error.
	Delete(key string) error
	// Scan calls fn for every key with the prefix, in key order, and stops
	// at the first error fn returns. fn must not call the KV and must copy
	// v if it keeps it.
	Scan(prefix string, fn func(key string, v []byte) error) error
}

// MemKV is a KV held in memory, safe for concurrent use.
type MemKV struct {
	mu sync.RWMutex
	m  map[string][]byte
}

var _ KV = (*MemKV)(nil)

// NewMemKV returns an empty MemKV.
func NewMemKV() *MemKV { return &MemKV{m: make(map[string][]byte)} }

// Get implements KV.
func (kv *MemKV) Get(key string) ([]byte, error) {
	kv.mu.RLock()
	defer kv.mu.RUnlock()
	v, ok := kv.m[key]
	if !ok {
		return nil, nil
	}
	return append([]byte(nil), v...), nil
}

// Set implements KV.
func (kv *MemKV) Set(key string, v []byte) error {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	kv.m[key] = append([]byte(nil), v...)
	return nil
}

// Delete implements KV.
func (kv *MemKV) Delete(key string) error {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	delete(kv.m, key)
	return nil
}

// Scan implements KV.
func (kv *MemKV) Scan(prefix string, fn func(key string, v []byte) error) error {
	kv.mu.RLock()
	keys := make([]string, 0, len(kv.m))
	for k := range kv.m {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	kv.mu.RUnlock()
	sort.Strings(keys)
	for _, k := range keys {
		kv.mu.RLock()
		v, ok := kv.m[k]
		kv.mu.RUnlock()
		if !ok {
			continue
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// Len returns the number of keys.
func (kv *MemKV) Len() int {
	kv.mu.RLock()
	defer kv.mu.RUnlock()
	return len(kv.m)
}
