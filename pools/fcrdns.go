package pools

import (
	"context"
	"net/netip"
	"strings"

	"go.uber.org/zap"
)

// PTRLookup returns the reverse DNS names of an address.
type PTRLookup func(ctx context.Context, ip netip.Addr) ([]string, error)

// CheckReverseDNS warns about every VMTA whose source IP's PTR record does
// not name its EHLO host: receivers (Gmail, Yahoo, Microsoft) expect
// forward-confirmed reverse DNS. It only logs; it returns the names of the
// VMTAs that failed, for tests.
func (r *Registry) CheckReverseDNS(ctx context.Context, lookup PTRLookup) []string {
	var bad []string
	vs := []*VMTA{r.builtin}
	for _, v := range r.vmtas {
		if v != r.builtin {
			vs = append(vs, v)
		}
	}
	for _, v := range vs {
		if !v.SourceIP.IsValid() {
			continue
		}
		names, err := lookup(ctx, v.SourceIP)
		match := false
		for _, n := range names {
			if strings.EqualFold(strings.TrimSuffix(n, "."), v.Hostname) {
				match = true
			}
		}
		if !match {
			bad = append(bad, v.Name)
			r.log.Warn("source IP's PTR does not match the VMTA's name (FCrDNS)",
				zap.String("vmta", v.Name), zap.String("source_ip", v.SourceIP.String()),
				zap.String("helo", v.Hostname), zap.Strings("ptr", names), zap.Error(err))
		}
	}
	return bad
}
