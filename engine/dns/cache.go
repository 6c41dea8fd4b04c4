package dns

import (
	"container/list"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// answer is the outcome of one lookup of a name and type, as cached.
type answer struct {
	nxdomain bool     // the name does not exist (RFC 1035 §4.1.1 RCODE 3)
	rrs      []dns.RR // records of the asked type at the end of any CNAME chain; empty = NODATA
	err      error    // a *reply.Error: no server gave an answer; rrs and nxdomain unset
}

type cacheKey struct {
	name  string // lower-case FQDN
	qtype uint16
}

type cacheEntry struct {
	key     cacheKey
	a       *answer
	expires time.Time
}

// cache holds answers until they expire, at most max of them, dropping the
// least recently used first. Keys come from peers' domains, so the bound is
// what keeps memory finite.
type cache struct {
	mu  sync.Mutex
	max int
	ll  *list.List // of *cacheEntry, most recently used at the front
	m   map[cacheKey]*list.Element
}

func newCache(max int) *cache {
	return &cache{max: max, ll: list.New(), m: make(map[cacheKey]*list.Element)}
}

// get returns the answer for k if it has not expired at now.
func (c *cache) get(k cacheKey, now time.Time) (*answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.m, k)
		return nil, false
	}
	c.ll.MoveToFront(el)
	return e.a, true
}

// put stores a until expires, evicting the least recently used entry when
// the cache is full.
func (c *cache) put(k cacheKey, a *answer, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		e := el.Value.(*cacheEntry)
		e.a, e.expires = a, expires
		c.ll.MoveToFront(el)
		return
	}
	c.m[k] = c.ll.PushFront(&cacheEntry{key: k, a: a, expires: expires})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(*cacheEntry).key)
	}
}

// len returns the number of entries, expired ones included.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
