package pools

// pool rotates its members by smooth weighted round-robin: each pick adds
// every eligible member's weight to its current value, takes the member
// with the largest value and subtracts the total from it. Over any window
// the shares follow the weights, interleaved (1:1:2:4 gives
// v4 v3 v4 v1 v4 v3 v4 v2 …) rather than in bursts.
type pool struct {
	name    string
	members []*member
}

type member struct {
	v       *VMTA
	weight  int
	current int
}

// pickFromPool returns the next eligible member; a member that is disabled
// for site or over its warm-up cap is skipped and its share goes to the
// others.
func (r *Registry) pickFromPool(p *pool, site string) (*VMTA, error) {
	r.mu.Lock()
	now := r.now()
	eligible := make([]*member, 0, len(p.members))
	for _, m := range p.members {
		if until, ok := r.disabled[siteKey{m.v.Name, site}]; ok && now.Before(until) {
			continue
		}
		eligible = append(eligible, m)
	}
	r.mu.Unlock()
	for len(eligible) > 0 {
		r.mu.Lock()
		best, total := -1, 0
		for i, m := range eligible {
			m.current += m.weight
			total += m.weight
			if best < 0 || m.current > eligible[best].current {
				best = i
			}
		}
		m := eligible[best]
		m.current -= total
		r.mu.Unlock()
		if r.takeQuota(m.v, site) {
			return m.v, nil
		}
		// At its cap for today: drop it from this pick and go again.
		eligible = append(eligible[:best], eligible[best+1:]...)
	}
	return nil, ErrNoRoom
}
