package pools

import (
	"slices"
	"strconv"
	"time"
)

// VMTAStatus describes one VMTA for the admin API.
type VMTAStatus struct {
	Name     string         `json:"name"`
	SourceIP string         `json:"source_ip,omitempty"` // "" when the kernel chooses
	Hostname string         `json:"hostname"`
	State    string         `json:"state"`           // "active", "warming-up" or "capped" (at today's warm-up cap)
	Pools    []string       `json:"pools,omitempty"` // pools it belongs to, with its weight: "name:weight"
	Disabled []DisabledSite `json:"disabled,omitempty"`
	Warmup   *WarmupStatus  `json:"warmup,omitempty"` // nil when not warming up
}

// DisabledSite is a site a VMTA may not send to until a time.
type DisabledSite struct {
	Site  string    `json:"site"`
	Until time.Time `json:"until"`
}

// WarmupStatus is a VMTA's warm-up position today.
type WarmupStatus struct {
	Day     int   `json:"day"`  // 1 on warmup-start
	Cap     int   `json:"cap"`  // today's cap
	Sent    int64 `json:"sent"` // counted today; -1 with warmup-per-site (counted per site)
	PerSite bool  `json:"per_site"`
}

// Status returns every VMTA's state, sorted by name: the built-in default
// first when no [[virtual-mta]] replaces it.
func (r *Registry) Status() []VMTAStatus {
	now := r.now()
	vs := []*VMTA{r.builtin}
	names := make([]string, 0, len(r.vmtas))
	for n := range r.vmtas {
		if r.vmtas[n] != r.builtin {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		vs = append(vs, r.vmtas[n])
	}
	r.mu.Lock()
	member := map[string][]string{}
	for _, p := range r.pools {
		for _, m := range p.members {
			member[m.v.Name] = append(member[m.v.Name], p.name+":"+strconv.Itoa(m.weight))
		}
	}
	disabled := map[string][]DisabledSite{}
	for k, until := range r.disabled {
		if now.Before(until) {
			disabled[k.vmta] = append(disabled[k.vmta], DisabledSite{Site: k.site, Until: until})
		}
	}
	r.mu.Unlock()
	out := make([]VMTAStatus, 0, len(vs))
	for _, v := range vs {
		st := VMTAStatus{Name: v.Name, Hostname: v.Hostname, State: "active", Disabled: disabled[v.Name]}
		if v.SourceIP.IsValid() {
			st.SourceIP = v.SourceIP.String()
		}
		st.Pools = member[v.Name]
		slices.Sort(st.Pools)
		slices.SortFunc(st.Disabled, func(a, b DisabledSite) int {
			if a.Site < b.Site {
				return -1
			}
			if a.Site > b.Site {
				return 1
			}
			return 0
		})
		if limit, capped := v.warmup.capFor(now); capped {
			w := &WarmupStatus{Cap: limit, Sent: -1, PerSite: v.warmup.perSite}
			w.Day = int(now.UTC().Truncate(24*time.Hour).Sub(v.warmup.start.UTC().Truncate(24*time.Hour))/(24*time.Hour)) + 1
			st.State = "warming-up"
			if !v.warmup.perSite {
				if n, err := r.counters.Counter("warmup/" + v.Name + "/" + now.UTC().Format(time.DateOnly)); err == nil {
					w.Sent = n
					if n >= int64(limit) {
						st.State = "capped"
					}
				}
			}
			st.Warmup = w
		}
		out = append(out, st)
	}
	return out
}
