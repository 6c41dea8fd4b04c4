package dns

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/sluice-mta/sluice/engine/reply"
	"golang.org/x/net/idna"
)

// MX is one MX record: a preference and an exchange host (lower-case, no
// trailing dot). A Host of "." is a null MX (RFC 7505 §3).
type MX struct {
	Pref uint16
	Host string
}

// maxCNAME bounds how many CNAMEs are followed in one answer, which also
// ends loops (RFC 1034 §3.6.2: chains are followed, loops are an error).
const maxCNAME = 8

// Replies, shared by all lookups. Their texts are safe to show a peer.
func errTemp(cause error) *reply.Error {
	return reply.Wrap(451, reply.Status{4, 4, 3}, "DNS lookup failed, will retry", cause)
}

func errNX(name string) *reply.Error {
	return reply.Wrap(550, reply.Status{5, 1, 2}, "domain does not exist", fmt.Errorf("%s: %w", display(name), ErrNXDomain))
}

// LookupMX returns domain's MX records as published, in answer order; a
// domain without any (NODATA) gives none and no error. A nonexistent domain
// gives 550 5.1.2 (cause ErrNXDomain); a failed lookup 451 4.4.3.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	name, err := normalize(domain)
	if err != nil {
		return nil, err
	}
	a := r.query(ctx, name, dns.TypeMX)
	switch {
	case a.err != nil:
		return nil, a.err
	case a.nxdomain:
		return nil, errNX(name)
	}
	mxs := make([]MX, 0, len(a.rrs))
	for _, rr := range a.rrs {
		mx := rr.(*dns.MX)
		mxs = append(mxs, MX{Host: display(dns.CanonicalName(mx.Mx)), Pref: mx.Preference})
	}
	return mxs, nil
}

// LookupIP returns host's IPv4 addresses (A) followed by its IPv6 ones
// (AAAA), each family in answer order. The two are asked in parallel; one
// family failing does not hide the other's addresses. A host with neither
// (NODATA) gives none and no error; a nonexistent one 550 5.1.2; a failed
// lookup with no address found 451 4.4.3.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	name, err := normalize(host)
	if err != nil {
		return nil, err
	}
	if ips, ok, err := r.cachedIP(name); ok {
		return ips, err
	}
	var a4 *answer
	var wg sync.WaitGroup
	wg.Go(func() { a4 = r.query(ctx, name, dns.TypeA) })
	a6 := r.query(ctx, name, dns.TypeAAAA)
	wg.Wait()
	return combineIP(name, a4, a6)
}

// cachedIP is LookupIP for a normalized name answered from the cache alone,
// without starting a goroutine; ok is false unless both A and AAAA are
// cached.
func (r *Resolver) cachedIP(name string) (ips []netip.Addr, ok bool, err error) {
	now := r.now()
	a4, ok4 := r.cache.get(cacheKey{name, dns.TypeA}, now)
	a6, ok6 := r.cache.get(cacheKey{name, dns.TypeAAAA}, now)
	if !ok4 || !ok6 {
		return nil, false, nil
	}
	ips, err = combineIP(name, a4, a6)
	return ips, true, err
}

// combineIP merges the A and AAAA answers for name: IPv4 first.
func combineIP(name string, a4, a6 *answer) ([]netip.Addr, error) {
	var ips []netip.Addr
	for _, a := range []*answer{a4, a6} {
		for _, rr := range a.rrs {
			var ip netip.Addr
			switch rr := rr.(type) {
			case *dns.A:
				ip, _ = netip.AddrFromSlice(rr.A.To4())
			case *dns.AAAA:
				ip, _ = netip.AddrFromSlice(rr.AAAA.To16())
			}
			if ip.IsValid() {
				ips = append(ips, ip)
			}
		}
	}
	switch {
	case len(ips) > 0:
		return ips, nil
	case a4.err != nil:
		return nil, a4.err
	case a6.err != nil:
		return nil, a6.err
	case a4.nxdomain || a6.nxdomain:
		return nil, errNX(name)
	}
	return nil, nil
}

// LookupTXT returns name's TXT records, the character-strings of each
// joined into one string (RFC 7208 §3.3, RFC 6376 §3.6.2.2). NODATA gives
// none and no error; errors are as for LookupMX.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	n, err := normalize(name)
	if err != nil {
		return nil, err
	}
	a := r.query(ctx, n, dns.TypeTXT)
	switch {
	case a.err != nil:
		return nil, a.err
	case a.nxdomain:
		return nil, errNX(n)
	}
	txts := make([]string, 0, len(a.rrs))
	for _, rr := range a.rrs {
		txts = append(txts, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return txts, nil
}

// query returns the answer for name and qtype from the cache, or asks the
// servers. Concurrent identical queries share one exchange; that exchange
// is detached from the callers' cancellation (it is bounded by Timeout and
// Attempts), so one caller giving up does not fail the others.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) *answer {
	key := cacheKey{name, qtype}
	if a, ok := r.cache.get(key, r.now()); ok {
		return a
	}
	ch := r.flight.DoChan(typeName(qtype)+" "+name, func() (any, error) {
		// A flight that ended between our cache miss and DoChan has
		// stored its answer: use it rather than ask again.
		if a, ok := r.cache.get(key, r.now()); ok {
			return a, nil
		}
		a, ttl := r.resolve(context.WithoutCancel(ctx), name, qtype)
		if ttl > 0 {
			r.cache.put(key, a, r.now().Add(ttl))
		}
		return a, nil
	})
	select {
	case res := <-ch:
		return res.Val.(*answer)
	case <-ctx.Done():
		return &answer{err: errTemp(fmt.Errorf("%s %s: %w", display(name), typeName(qtype), ctx.Err()))}
	}
}

// resolve asks the servers and returns the answer with how long it may be
// cached (0: not at all).
func (r *Resolver) resolve(ctx context.Context, name string, qtype uint16) (*answer, time.Duration) {
	msg, err := r.exchange(ctx, name, qtype)
	if err != nil {
		return &answer{err: errTemp(fmt.Errorf("%s %s: %w", display(name), typeName(qtype), err))}, failureTTL
	}
	rrs, chainTTL := follow(msg, name, qtype)
	if msg.Rcode == dns.RcodeNameError {
		// RFC 6604 §3: the RCODE is about the last name of the chain.
		return &answer{nxdomain: true}, min(negativeTTL(msg), chainTTL)
	}
	if len(rrs) == 0 { // NODATA (RFC 2308 §2.2)
		return &answer{}, min(negativeTTL(msg), chainTTL)
	}
	ttl := chainTTL
	for _, rr := range rrs {
		ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second) // RFC 2181 §5.2: one TTL per RRset
	}
	return &answer{rrs: rrs}, ttl
}

// follow walks the CNAME chain from name through msg's answer section
// (RFC 1034 §3.6.2, RFC 5321 §5.1) and returns the records of qtype owned by
// its last name, with the smallest TTL of the CNAMEs walked (maxTTL if none).
func follow(msg *dns.Msg, name string, qtype uint16) ([]dns.RR, time.Duration) {
	ttl := maxTTL
	cur := name
	for range maxCNAME + 1 {
		next := ""
		var rrs []dns.RR
		for _, rr := range msg.Answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || !strings.EqualFold(h.Name, cur) {
				continue
			}
			switch {
			case h.Rrtype == qtype:
				rrs = append(rrs, rr)
			case h.Rrtype == dns.TypeCNAME && next == "":
				next = dns.CanonicalName(rr.(*dns.CNAME).Target)
				ttl = min(ttl, time.Duration(h.Ttl)*time.Second)
			}
		}
		if len(rrs) > 0 || next == "" {
			return rrs, ttl
		}
		cur = next
	}
	return nil, ttl // a chain too long: treat as no data
}

// negativeTTL is how long a negative answer may be cached: the SOA's TTL or
// MINIMUM, whichever is smaller, capped at maxNegTTL (RFC 2308 §5). Without
// an SOA it is not cached (RFC 2308 §5: SHOULD NOT).
func negativeTTL(msg *dns.Msg) time.Duration {
	for _, rr := range msg.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second, maxNegTTL)
		}
	}
	return 0
}

// normalize returns domain as a lower-case FQDN in A-labels (RFC 5890
// §2.3.2.1), or 550 5.1.3 if it is not a valid domain name.
func normalize(domain string) (string, error) {
	d := strings.TrimSuffix(domain, ".")
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 { // RFC 6531 §3.7.3: U-labels are looked up as A-labels
			a, err := idna.Lookup.ToASCII(d)
			if err != nil {
				return "", badName(domain, err)
			}
			d = a
			break
		}
	}
	name := dns.CanonicalName(d)
	if _, ok := dns.IsDomainName(name); !ok || name == "." || !ldh(name) {
		return "", badName(domain, nil)
	}
	return name, nil
}

// ldh reports whether name holds only letters, digits, hyphens, dots and
// underscores (RFC 1123 §2.1 host names, plus the "_" of RFC 8552 service
// names such as _dmarc), with no empty label.
func ldh(name string) bool {
	prev := byte('.')
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.' && prev != '.':
		default:
			return false
		}
		prev = c
	}
	return true
}

func badName(domain string, cause error) *reply.Error {
	err := fmt.Errorf("%q: %w", domain, ErrBadName)
	if cause != nil {
		err = fmt.Errorf("%w: %w", err, cause)
	}
	return reply.Wrap(550, reply.Status{5, 1, 3}, "invalid domain name", err)
}

// display returns a lower-case FQDN without its trailing dot; "." stays.
func display(name string) string {
	if name == "." {
		return name
	}
	return strings.TrimSuffix(name, ".")
}

// LookupPTR returns the names an address's reverse zone points to (RFC 1035
// §3.5 in-addr.arpa, RFC 3596 §2.5 ip6.arpa), lower case without the final
// dot. Used to check forward-confirmed reverse DNS of a source IP.
func (r *Resolver) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error) {
	arpa, err := dns.ReverseAddr(ip.String())
	if err != nil {
		return nil, badName(ip.String(), err)
	}
	a := r.query(ctx, strings.ToLower(arpa), dns.TypePTR)
	switch {
	case a.err != nil:
		return nil, a.err
	case a.nxdomain:
		return nil, errNX(arpa)
	}
	names := make([]string, 0, len(a.rrs))
	for _, rr := range a.rrs {
		if p, ok := rr.(*dns.PTR); ok {
			names = append(names, strings.TrimSuffix(strings.ToLower(p.Ptr), "."))
		}
	}
	return names, nil
}
