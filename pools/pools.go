// Package pools holds the virtual MTAs (a source IP and its EHLO name) and
// the weighted pools they are rotated in. Pick chooses the VMTA for one
// message and destination site: by smooth weighted round-robin within a
// pool, skipping a VMTA that is disabled for that site or at its warm-up cap
// for today; mail waits when no VMTA has room. Nothing here sends mail.
package pools

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/reply"
)

// DefaultName names the built-in VMTA and the pool used when mail names
// none.
const DefaultName = "default"

// ErrUnknown is the reply for a VMTA or pool name that is not configured
// (550 5.3.5: the system is not configured for it, RFC 3463).
var ErrUnknown = reply.New(550, reply.Status{5, 3, 5}, "unknown virtual MTA")

// ErrNoRoom means that no VMTA may take the mail now (all disabled for the
// site or at their warm-up caps): the mail waits and is picked again later.
var ErrNoRoom = errors.New("pools: no virtual MTA available now")

// VMTA is a virtual MTA: where mail leaves from and what it greets with.
type VMTA struct {
	Name     string
	SourceIP netip.Addr // invalid: the kernel chooses
	Hostname string
	warmup   warmup
}

// Counters persist warm-up counts (the spool implements it).
type Counters interface {
	AddCounter(name string, delta int64) (int64, error)
	Counter(name string) (int64, error)
}

// Registry holds the configured VMTAs and pools and their state.
type Registry struct {
	vmtas    map[string]*VMTA
	pools    map[string]*pool
	builtin  *VMTA
	counters Counters
	now      func() time.Time
	log      *zap.Logger

	mu       sync.Mutex
	disabled map[siteKey]time.Time // VMTA disabled for a site until
}

type siteKey struct{ vmta, site string }

// Options wire a Registry.
type Options struct {
	Counters Counters         // nil: warm-up counts live in memory only
	Now      func() time.Time // nil: time.Now
	Log      *zap.Logger
}

// New builds the registry from a validated config. The built-in VMTA
// "default" uses [delivery] source-ip and hostname, unless a [[virtual-mta]]
// named "default" replaces it.
func New(cfg *config.Config, o Options) *Registry {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Counters == nil {
		o.Counters = newMemCounters()
	}
	r := &Registry{
		vmtas:    make(map[string]*VMTA),
		pools:    make(map[string]*pool),
		counters: o.Counters,
		now:      o.Now,
		log:      o.Log,
		disabled: make(map[siteKey]time.Time),
	}
	src, _ := netip.ParseAddr(cfg.Delivery.SourceIP)
	r.builtin = &VMTA{Name: DefaultName, SourceIP: src, Hostname: cfg.Hostname}
	for _, vc := range cfg.VirtualMTAs {
		ip, host := vc.Source()
		v := &VMTA{Name: vc.Name, SourceIP: ip, Hostname: host,
			warmup: warmup{start: vc.WarmupStart.Time, daily: vc.WarmupDaily, perSite: vc.WarmupPerSite}}
		r.vmtas[v.Name] = v
		if v.Name == DefaultName {
			r.builtin = v
		}
	}
	for _, pc := range cfg.Pools {
		p := &pool{name: pc.Name}
		for _, m := range pc.Members() {
			if v := r.vmtas[m.VMTA]; v != nil {
				p.members = append(p.members, &member{v: v, weight: m.Weight})
			}
		}
		r.pools[p.name] = p
	}
	return r
}

// Known reports whether name is "" (nothing requested), a VMTA or a pool.
func (r *Registry) Known(name string) bool {
	if name == "" || name == DefaultName {
		return true
	}
	_, v := r.vmtas[name]
	_, p := r.pools[name]
	return v || p
}

// Get returns the VMTA called name, or nil.
func (r *Registry) Get(name string) *VMTA {
	if name == r.builtin.Name {
		return r.builtin
	}
	return r.vmtas[name]
}

// Pick chooses the VMTA for one message to site. requested is what the
// message asked for (header or default-virtual-mta): a VMTA, a pool, or ""
// for the pool named "default" if there is one, else the built-in VMTA.
// pool is the pool chosen from ("" for a VMTA named directly). A warm-up
// quota is taken for the message. ErrNoRoom means: wait and pick again.
func (r *Registry) Pick(requested, site string) (v *VMTA, pool string, err error) {
	if requested == "" {
		if _, ok := r.pools[DefaultName]; ok {
			requested = DefaultName
		}
	}
	if p, ok := r.pools[requested]; ok {
		v, err := r.pickFromPool(p, site)
		return v, p.name, err
	}
	switch {
	case requested == "" || requested == DefaultName && r.vmtas[DefaultName] == nil:
		v = r.builtin
	case r.vmtas[requested] != nil:
		v = r.vmtas[requested]
	default:
		return nil, "", ErrUnknown
	}
	if !r.Available(v, site) || !r.takeQuota(v, site) {
		return nil, "", ErrNoRoom
	}
	return v, "", nil
}

// Available reports whether v may send to site now (not disabled for it).
// Mail already assigned to v keeps its warm-up quota: a retry is not
// counted again.
func (r *Registry) Available(v *VMTA, site string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	until, ok := r.disabled[siteKey{v.Name, site}]
	if !ok {
		return true
	}
	if r.now().Before(until) {
		return false
	}
	delete(r.disabled, siteKey{v.Name, site})
	r.log.Info("vmta re-enabled", zap.String("vmta", v.Name), zap.String("site", site))
	return true
}

// Disable takes v out of rotation for site until the given time.
func (r *Registry) Disable(v *VMTA, site string, until time.Time, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := siteKey{v.Name, site}
	if cur, ok := r.disabled[k]; ok && !until.After(cur) {
		return
	}
	r.disabled[k] = until
	r.log.Warn("vmta disabled", zap.String("vmta", v.Name), zap.String("site", site),
		zap.Time("until", until), zap.String("reason", reason))
}

// String describes v for logs: "v1 (127.0.0.2 v1.example.test)".
func (v *VMTA) String() string {
	return fmt.Sprintf("%s (%s %s)", v.Name, v.SourceIP, v.Hostname)
}
