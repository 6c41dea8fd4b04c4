package doctor

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/sluice-mta/sluice/engine/dns"
)

// SPF results (RFC 7208 §2.6).
const (
	SPFNone      = "none"
	SPFNeutral   = "neutral"
	SPFPass      = "pass"
	SPFFail      = "fail"
	SPFSoftFail  = "softfail"
	SPFTempError = "temperror"
	SPFPermError = "permerror"
)

// Limits of RFC 7208 §4.6.4.
const (
	maxLookups     = 10 // terms that cause DNS queries
	maxVoidLookups = 2  // lookups answered NXDOMAIN or with no records
	maxMXNames     = 10 // MX names looked up for one mx mechanism
)

// SPFResult is the outcome of check_host() for one IP and domain.
type SPFResult struct {
	Result  string // one of the SPF* constants
	Match   string // the mechanism that decided, e.g. "ip4:192.0.2.0/24" in "example.com"
	Reason  string // why, for errors and for none
	Lookups int    // DNS-querying terms used, of maxLookups
}

// spfState is shared by one evaluation and its includes and redirects.
type spfState struct {
	r       Resolver
	ip      netip.Addr
	sender  string // MAIL FROM, or postmaster@domain
	helo    string
	lookups int
	voids   int
	depth   int
}

type spfErr struct {
	result, reason string
}

func (e *spfErr) Error() string { return e.result + ": " + e.reason }

func permErr(format string, args ...any) error {
	return &spfErr{SPFPermError, fmt.Sprintf(format, args...)}
}

func tempErr(format string, args ...any) error {
	return &spfErr{SPFTempError, fmt.Sprintf(format, args...)}
}

// CheckSPF evaluates the SPF record of domain for mail from ip with the
// given MAIL FROM (RFC 7208 §4: check_host()). It supports every
// mechanism and the redirect modifier, the macros of §7, and the lookup
// limits of §4.6.4.
func CheckSPF(ctx context.Context, r Resolver, ip netip.Addr, domain, sender, helo string) SPFResult {
	if sender == "" {
		sender = "postmaster@" + domain
	}
	st := &spfState{r: r, ip: ip.Unmap(), sender: sender, helo: helo}
	res, match, err := st.checkHost(ctx, strings.TrimSuffix(strings.ToLower(domain), "."))
	out := SPFResult{Result: res, Match: match, Lookups: st.lookups}
	var se *spfErr
	if errors.As(err, &se) {
		out.Result, out.Reason = se.result, se.reason
	} else if err != nil {
		out.Result, out.Reason = SPFTempError, err.Error()
	}
	return out
}

// record returns domain's one SPF record, "" when it has none (§4.5).
func (st *spfState) record(ctx context.Context, domain string) (string, error) {
	txts, err := st.r.LookupTXT(ctx, domain)
	if errors.Is(err, dns.ErrNXDomain) {
		return "", nil
	}
	if err != nil {
		return "", tempErr("TXT %s: %v", domain, err)
	}
	var recs []string
	for _, t := range txts {
		if strings.EqualFold(t, "v=spf1") || len(t) > 7 && strings.EqualFold(t[:7], "v=spf1 ") {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return "", nil
	case 1:
		return recs[0], nil
	}
	return "", permErr("%s publishes %d SPF records; it must publish one", domain, len(recs))
}

func (st *spfState) count() error {
	st.lookups++
	if st.lookups > maxLookups {
		return permErr("more than %d DNS-querying terms (RFC 7208 §4.6.4)", maxLookups)
	}
	return nil
}

func (st *spfState) void(n int, err error) error {
	if n == 0 && (err == nil || errors.Is(err, dns.ErrNXDomain)) {
		st.voids++
		if st.voids > maxVoidLookups {
			return permErr("more than %d lookups found nothing (RFC 7208 §4.6.4)", maxVoidLookups)
		}
		return nil
	}
	if err != nil && !errors.Is(err, dns.ErrNXDomain) {
		return tempErr("%v", err)
	}
	return nil
}

// checkHost is check_host() for domain; match names the deciding term.
func (st *spfState) checkHost(ctx context.Context, domain string) (result, match string, err error) {
	st.depth++
	defer func() { st.depth-- }()
	if st.depth > maxLookups+1 {
		return "", "", permErr("include/redirect loop")
	}
	rec, err := st.record(ctx, domain)
	if err != nil {
		return "", "", err
	}
	if rec == "" {
		return SPFNone, "", &spfErr{SPFNone, "no SPF record at " + domain}
	}
	terms := strings.Fields(rec)[1:]
	redirect := ""
	for _, t := range terms {
		if name, value, ok := modifier(t); ok {
			if name == "redirect" {
				if redirect != "" {
					return "", "", permErr("%s: two redirect modifiers", domain)
				}
				redirect = value
			}
			continue // exp= and unknown modifiers do not change the result (§6)
		}
	}
	for _, t := range terms {
		if _, _, ok := modifier(t); ok {
			continue
		}
		q, mech := byte('+'), t
		if strings.IndexByte("+-~?", t[0]) >= 0 {
			q, mech = t[0], t[1:]
		}
		hit, err := st.mechanism(ctx, domain, mech)
		if err != nil {
			return "", "", err
		}
		if hit {
			return qualifier(q), t + " in " + domain, nil
		}
	}
	if redirect != "" {
		if err := st.count(); err != nil {
			return "", "", err
		}
		target, err := st.expand(redirect, domain)
		if err != nil {
			return "", "", err
		}
		res, m, err := st.checkHost(ctx, target)
		var se *spfErr
		if errors.As(err, &se) && se.result == SPFNone {
			return "", "", permErr("redirect=%s has no SPF record", target) // §6.1
		}
		return res, m, err
	}
	return SPFNeutral, "", nil // §4.7: no match, no redirect
}

func qualifier(q byte) string {
	switch q {
	case '-':
		return SPFFail
	case '~':
		return SPFSoftFail
	case '?':
		return SPFNeutral
	}
	return SPFPass
}

// modifier splits name=value when t is a modifier (§4.6.1: the name is
// followed by "=" before any ":" or "/").
func modifier(t string) (name, value string, ok bool) {
	i := strings.IndexAny(t, "=:/")
	if i <= 0 || t[i] != '=' {
		return "", "", false
	}
	return strings.ToLower(t[:i]), t[i+1:], true
}

// mechanism reports whether term (without qualifier) matches the IP.
func (st *spfState) mechanism(ctx context.Context, domain, term string) (bool, error) {
	name, arg := term, ""
	if i := strings.IndexAny(term, ":/"); i >= 0 {
		name, arg = term[:i], term[i:]
	}
	name = strings.ToLower(name)
	switch name {
	case "all":
		return true, nil
	case "ip4", "ip6":
		p, err := netip.ParsePrefix(strings.TrimPrefix(arg, ":"))
		if err != nil {
			a, aerr := netip.ParseAddr(strings.TrimPrefix(arg, ":"))
			if aerr != nil || (name == "ip4") != a.Is4() {
				return false, permErr("%s: bad %s", domain, term)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if (name == "ip4") != p.Addr().Is4() {
			return false, permErr("%s: bad %s", domain, term)
		}
		return p.Contains(st.ip), nil
	case "a", "mx", "ptr", "include", "exists":
	default:
		return false, permErr("%s: unknown mechanism %q", domain, term)
	}
	if err := st.count(); err != nil {
		return false, err
	}
	spec, c4, c6, err := splitCIDR(arg)
	if err != nil {
		return false, permErr("%s: %s: %v", domain, term, err)
	}
	target := domain
	if spec != "" {
		if target, err = st.expand(spec, domain); err != nil {
			return false, err
		}
	} else if name == "include" || name == "exists" {
		return false, permErr("%s: %s needs a domain", domain, name)
	}
	switch name {
	case "include":
		res, _, err := st.checkHost(ctx, target)
		var se *spfErr
		if errors.As(err, &se) {
			if se.result == SPFNone {
				return false, permErr("include:%s has no SPF record", target) // §5.2
			}
			return false, err
		}
		return res == SPFPass, err
	case "a":
		ips, err := st.r.LookupIP(ctx, target)
		if err := st.void(len(ips), err); err != nil {
			return false, err
		}
		return st.matchIPs(ips, c4, c6), nil
	case "mx":
		mxs, err := st.r.LookupMX(ctx, target)
		if err := st.void(len(mxs), err); err != nil {
			return false, err
		}
		if len(mxs) > maxMXNames {
			return false, permErr("%s: more than %d MX names", target, maxMXNames)
		}
		for _, mx := range mxs {
			ips, err := st.r.LookupIP(ctx, mx.Host)
			if err := st.void(len(ips), err); err != nil {
				return false, err
			}
			if st.matchIPs(ips, c4, c6) {
				return true, nil
			}
		}
		return false, nil
	case "exists":
		ips, err := st.r.LookupIP(ctx, target)
		if err := st.void(len(ips), err); err != nil {
			return false, err
		}
		for _, ip := range ips {
			if ip.Is4() {
				return true, nil
			}
		}
		return false, nil
	default: // ptr (§5.5, "do not use"): validated names at or under target
		names, err := st.r.LookupPTR(ctx, st.ip)
		if err := st.void(len(names), err); err != nil {
			return false, nil // PTR failures are no match
		}
		for i, n := range names {
			if i >= maxMXNames {
				break
			}
			if n != target && !strings.HasSuffix(n, "."+target) {
				continue
			}
			ips, _ := st.r.LookupIP(ctx, n)
			for _, ip := range ips {
				if ip == st.ip {
					return true, nil
				}
			}
		}
		return false, nil
	}
}

// splitCIDR splits ":domain/24//64" into its parts; missing lengths are
// the full address.
func splitCIDR(arg string) (spec string, c4, c6 int, err error) {
	c4, c6 = 32, 128
	if i := strings.Index(arg, "//"); i >= 0 {
		if c6, err = strconv.Atoi(arg[i+2:]); err != nil || c6 < 0 || c6 > 128 {
			return "", 0, 0, errors.New("bad ip6 prefix length")
		}
		arg = arg[:i]
	}
	if i := strings.LastIndexByte(arg, '/'); i >= 0 {
		if c4, err = strconv.Atoi(arg[i+1:]); err != nil || c4 < 0 || c4 > 32 {
			return "", 0, 0, errors.New("bad ip4 prefix length")
		}
		arg = arg[:i]
	}
	return strings.TrimPrefix(arg, ":"), c4, c6, nil
}

func (st *spfState) matchIPs(ips []netip.Addr, c4, c6 int) bool {
	for _, ip := range ips {
		ip = ip.Unmap()
		if ip.Is4() != st.ip.Is4() {
			continue
		}
		bits := c6
		if ip.Is4() {
			bits = c4
		}
		if p, err := ip.Prefix(bits); err == nil && p.Contains(st.ip) {
			return true
		}
	}
	return false
}

// expand expands the macros of a domain-spec (RFC 7208 §7).
func (st *spfState) expand(spec, domain string) (string, error) {
	if !strings.Contains(spec, "%") {
		return strings.TrimSuffix(strings.ToLower(spec), "."), nil
	}
	var b strings.Builder
	for i := 0; i < len(spec); i++ {
		c := spec[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(spec) {
			return "", permErr("bad macro in %q", spec)
		}
		i++
		switch spec[i] {
		case '%':
			b.WriteByte('%')
			continue
		case '_':
			b.WriteByte(' ')
			continue
		case '-':
			b.WriteString("%20")
			continue
		case '{':
		default:
			return "", permErr("bad macro in %q", spec)
		}
		end := strings.IndexByte(spec[i:], '}')
		if end < 2 {
			return "", permErr("bad macro in %q", spec)
		}
		v, err := st.macro(spec[i+1:i+end], domain)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
		i += end
	}
	return strings.TrimSuffix(strings.ToLower(b.String()), "."), nil
}

// macro expands one "%{...}" body: a letter, digits, "r", delimiters.
func (st *spfState) macro(m, domain string) (string, error) {
	local, dom, _ := strings.Cut(st.sender, "@")
	var v string
	switch m[0] | 0x20 {
	case 's':
		v = st.sender
	case 'l':
		v = local
	case 'o':
		v = dom
	case 'd':
		v = domain
	case 'h':
		v = st.helo
	case 'v':
		v = "in-addr"
		if st.ip.Is6() {
			v = "ip6"
		}
	case 'i':
		if st.ip.Is4() {
			v = st.ip.String()
		} else {
			x := st.ip.As16()
			var nib []string
			for _, c := range x {
				nib = append(nib, strconv.FormatUint(uint64(c>>4), 16), strconv.FormatUint(uint64(c&15), 16))
			}
			v = strings.Join(nib, ".")
		}
	case 'p':
		v = "unknown"
	default:
		return "", permErr("unknown macro letter %q", m[0])
	}
	rest := m[1:]
	n := 0
	for len(rest) > 0 && rest[0] >= '0' && rest[0] <= '9' {
		n = n*10 + int(rest[0]-'0')
		rest = rest[1:]
	}
	rev := false
	if len(rest) > 0 && (rest[0]|0x20) == 'r' {
		rev, rest = true, rest[1:]
	}
	delims := "."
	if rest != "" {
		delims = rest
	}
	parts := strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(delims, r) })
	if rev {
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
	}
	if n > 0 && n < len(parts) {
		parts = parts[len(parts)-n:]
	}
	return strings.Join(parts, "."), nil
}
