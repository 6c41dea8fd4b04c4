package pools

import (
	"slices"

	"github.com/sluice-mta/sluice/engine/config"
)

// Reweight applies the pool members and weights of a reloaded config to
// the pools that exist, among the VMTAs that exist. It returns what needs a
// restart instead: VMTAs and pools added or removed, and members naming an
// unknown VMTA. Picks read members under r.mu, so the change is atomic
// for them; each changed pool starts its rotation afresh.
func (r *Registry) Reweight(cfg *config.Config) (restart []string) {
	for _, vc := range cfg.VirtualMTAs {
		if r.vmtas[vc.Name] == nil {
			restart = append(restart, "virtual-mta "+vc.Name+" added")
		}
	}
	for name := range r.vmtas {
		if !slices.ContainsFunc(cfg.VirtualMTAs, func(vc config.VirtualMTA) bool { return vc.Name == name }) {
			restart = append(restart, "virtual-mta "+name+" removed")
		}
	}
	seen := map[string]bool{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, pc := range cfg.Pools {
		seen[pc.Name] = true
		p := r.pools[pc.Name]
		if p == nil {
			restart = append(restart, "virtual-mta-pool "+pc.Name+" added")
			continue
		}
		var ms []*member
		for _, m := range pc.Members() {
			v := r.vmtas[m.VMTA]
			if v == nil {
				continue // reported above as added
			}
			ms = append(ms, &member{v: v, weight: m.Weight})
		}
		p.members = ms
	}
	for name := range r.pools {
		if !seen[name] {
			restart = append(restart, "virtual-mta-pool "+name+" removed")
		}
	}
	slices.Sort(restart)
	return restart
}
