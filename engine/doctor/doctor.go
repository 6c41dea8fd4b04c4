// Package doctor checks, through DNS, what receivers check before they
// trust a sender: forward-confirmed reverse DNS of each source IP against
// its HELO name, SPF (RFC 7208) of each sending domain for each source IP,
// that each published DKIM key (RFC 6376) is the configured private key,
// and that a DMARC record (RFC 7489) exists and can align. Each check gives
// pass, warn or fail with a hint to fix it. It only reads DNS.
package doctor

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/sluice-mta/sluice/engine/dkim"
	"github.com/sluice-mta/sluice/engine/dns"
)

// Resolver is the DNS the checks ask; *dns.Resolver is one.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, domain string) ([]dns.MX, error)
	LookupIP(ctx context.Context, host string) ([]netip.Addr, error)
	LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error)
}

var _ Resolver = (*dns.Resolver)(nil)

// Status is a check's verdict.
type Status string

// The verdicts, from best to worst.
const (
	Pass Status = "pass"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Result is one line of the report.
type Result struct {
	Check   string `json:"check"`   // PTR, SPF, DKIM or DMARC
	Subject string `json:"subject"` // what was checked: a VMTA, a domain, a DKIM record name
	Status  Status `json:"status"`
	Detail  string `json:"detail"`
	Fix     string `json:"fix,omitempty"` // what to change; empty on pass
}

// VMTA is a source IP and the name it greets with.
type VMTA struct {
	Name string
	IP   netip.Addr // invalid: the kernel chooses
	Helo string
}

// Key is a configured DKIM key.
type Key struct {
	Domain, Selector string
	Signer           crypto.Signer
}

// Input is what to check.
type Input struct {
	VMTAs         []VMTA
	Domains       []string // sending domains (From and MAIL FROM)
	Keys          []Key
	DefaultDomain string // signs mail of domains without a key of their own
}

// Run runs every check and returns the results in a stable order: PTR per
// VMTA, then per domain SPF (per VMTA), DKIM (per key), DMARC.
func Run(ctx context.Context, r Resolver, in Input) []Result {
	var out []Result
	for _, v := range in.VMTAs {
		out = append(out, checkPTR(ctx, r, v))
	}
	domains := slices.Clone(in.Domains)
	for _, k := range in.Keys {
		domains = append(domains, k.Domain)
	}
	if in.DefaultDomain != "" {
		domains = append(domains, in.DefaultDomain)
	}
	for i, d := range domains {
		domains[i] = strings.TrimSuffix(strings.ToLower(d), ".")
	}
	slices.Sort(domains)
	domains = slices.Compact(domains)

	// DKIM first: DMARC of one domain may rest on another's key.
	dkimRes := map[string][]Result{}
	keyOK := map[string]bool{} // domain → one of its keys is published correctly
	for _, k := range in.Keys {
		res := checkDKIM(ctx, r, k)
		dkimRes[k.Domain] = append(dkimRes[k.Domain], res)
		keyOK[k.Domain] = keyOK[k.Domain] || res.Status == Pass
	}
	for _, d := range domains {
		spfOK := len(in.VMTAs) > 0
		for _, v := range in.VMTAs {
			res := checkSPF(ctx, r, d, v)
			spfOK = spfOK && res.Status == Pass
			out = append(out, res)
		}
		out = append(out, dkimRes[d]...)
		signer := ""
		switch {
		case hasKey(in.Keys, d):
			signer = d
		case in.DefaultDomain != "":
			signer = in.DefaultDomain
		}
		out = append(out, checkDMARC(ctx, r, d, signer, keyOK[signer], spfOK))
	}
	return out
}

func hasKey(keys []Key, d string) bool {
	return slices.ContainsFunc(keys, func(k Key) bool { return k.Domain == d })
}

// Worst returns the worst status among rs (Pass for none).
func Worst(rs []Result) Status {
	w := Pass
	for _, r := range rs {
		if r.Status == Fail {
			return Fail
		}
		if r.Status == Warn {
			w = Warn
		}
	}
	return w
}

func vmtaName(v VMTA) string {
	if !v.IP.IsValid() {
		return v.Name
	}
	return v.Name + " " + v.IP.String()
}

// checkPTR: the IP's PTR names the HELO name, and the name resolves back
// to the IP (forward-confirmed reverse DNS).
func checkPTR(ctx context.Context, r Resolver, v VMTA) Result {
	res := Result{Check: "PTR", Subject: vmtaName(v)}
	if !v.IP.IsValid() {
		res.Status, res.Detail = Warn, "no source IP configured; the kernel picks one, so PTR and SPF cannot be checked"
		res.Fix = "give the VMTA a source IP: smtp-source-host = \"IP NAME\" in [[virtual-mta]], or [delivery] source-ip"
		return res
	}
	names, err := r.LookupPTR(ctx, v.IP)
	if err != nil && !errors.Is(err, dns.ErrNXDomain) {
		res.Status, res.Detail = Warn, fmt.Sprintf("PTR lookup failed: %v", err)
		res.Fix = "check [dns] servers and retry"
		return res
	}
	if len(names) == 0 {
		res.Status, res.Detail = Fail, "no PTR record for "+v.IP.String()
		res.Fix = fmt.Sprintf("ask the owner of %s to set its PTR to %s", v.IP, v.Helo)
		return res
	}
	if !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, v.Helo) }) {
		res.Status = Fail
		res.Detail = fmt.Sprintf("PTR is %s, HELO name is %s", strings.Join(names, ", "), v.Helo)
		res.Fix = fmt.Sprintf("set the PTR of %s to %s, or greet as %s (smtp-source-host = \"%s %s\")", v.IP, v.Helo, names[0], v.IP, names[0])
		return res
	}
	ips, err := r.LookupIP(ctx, v.Helo)
	if err != nil && !errors.Is(err, dns.ErrNXDomain) {
		res.Status, res.Detail = Warn, fmt.Sprintf("lookup of %s failed: %v", v.Helo, err)
		res.Fix = "check [dns] servers and retry"
		return res
	}
	if !slices.Contains(ips, v.IP) {
		res.Status = Fail
		res.Detail = fmt.Sprintf("PTR is %s, but %s resolves to %s, not %s (no FCrDNS)", v.Helo, v.Helo, addrs(ips), v.IP)
		rr := "A"
		if v.IP.Is6() {
			rr = "AAAA"
		}
		res.Fix = fmt.Sprintf("add the %s record %s → %s", rr, v.Helo, v.IP)
		return res
	}
	res.Status, res.Detail = Pass, fmt.Sprintf("%s → %s → %s", v.IP, v.Helo, v.IP)
	return res
}

func addrs(ips []netip.Addr) string {
	if len(ips) == 0 {
		return "nothing"
	}
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}

// checkSPF: domain's SPF record authorizes the VMTA's IP.
func checkSPF(ctx context.Context, r Resolver, domain string, v VMTA) Result {
	res := Result{Check: "SPF", Subject: domain + " via " + vmtaName(v)}
	if !v.IP.IsValid() {
		res.Status, res.Detail = Warn, "no source IP configured; SPF cannot be checked"
		res.Fix = "give the VMTA a source IP"
		return res
	}
	mech := "ip4:"
	if v.IP.Is6() {
		mech = "ip6:"
	}
	add := fmt.Sprintf("add %s%s to the SPF record of %s", mech, v.IP, domain)
	s := CheckSPF(ctx, r, v.IP, domain, "", v.Helo)
	lookups := fmt.Sprintf(" (%d/%d DNS lookups)", s.Lookups, maxLookups)
	switch s.Result {
	case SPFPass:
		res.Status, res.Detail = Pass, s.Match+" matched"+lookups
	case SPFNone:
		res.Status, res.Detail = Fail, "no SPF record at "+domain
		res.Fix = fmt.Sprintf("publish TXT at %s: \"v=spf1 %s%s -all\"", domain, mech, v.IP)
	case SPFFail:
		res.Status, res.Detail, res.Fix = Fail, fmt.Sprintf("%s is not authorized: %s gives fail%s", v.IP, s.Match, lookups), add
	case SPFSoftFail, SPFNeutral:
		m := s.Match
		if m == "" {
			m = "no mechanism matched"
		}
		res.Status, res.Detail, res.Fix = Warn, fmt.Sprintf("%s is not authorized: %s gives %s%s", v.IP, m, s.Result, lookups), add
	case SPFTempError:
		res.Status, res.Detail, res.Fix = Warn, "temporary DNS error: "+s.Reason, "check [dns] servers and retry"
	default:
		res.Status, res.Detail = Fail, "permerror: "+s.Reason
		res.Fix = "fix the SPF record of " + domain + " (one record, at most 10 lookups, valid terms)"
	}
	return res
}

// checkDKIM: the key published at selector._domainkey.domain is the
// public half of the configured private key.
func checkDKIM(ctx context.Context, r Resolver, k Key) Result {
	name := k.Selector + "._domainkey." + k.Domain
	res := Result{Check: "DKIM", Subject: name}
	want, err := dkim.PublicRecord(k.Signer.Public())
	if err != nil {
		res.Status, res.Detail = Fail, err.Error()
		return res
	}
	publish := fmt.Sprintf("publish TXT at %s: \"%s\"", name, want)
	txts, err := r.LookupTXT(ctx, name)
	if err != nil && !errors.Is(err, dns.ErrNXDomain) {
		res.Status, res.Detail, res.Fix = Warn, fmt.Sprintf("lookup failed: %v", err), "check [dns] servers and retry"
		return res
	}
	var problems []string
	for _, t := range txts {
		pub, err := dkim.ParseRecord(t)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if dkim.SamePublic(pub, k.Signer) {
			res.Status, res.Detail = Pass, "published key matches the key-file ("+keyDesc(k.Signer)+")"
			return res
		}
		problems = append(problems, "published key differs from the key-file")
	}
	res.Status, res.Fix = Fail, publish+", or point key-file at the matching private key"
	if len(problems) == 0 {
		res.Detail, res.Fix = "no DKIM key record", publish
	} else {
		res.Detail = strings.Join(problems, "; ")
	}
	return res
}

func keyDesc(s crypto.Signer) string {
	rec, _ := dkim.PublicRecord(s.Public())
	if strings.Contains(rec, "k=ed25519") {
		return "ed25519"
	}
	type sized interface{ Size() int }
	if k, ok := s.Public().(sized); ok {
		return fmt.Sprintf("rsa %d bits", k.Size()*8)
	}
	return "rsa"
}

// orgDomain is the organizational domain (RFC 7489 §3.2), by the public
// suffix list.
func orgDomain(d string) string {
	if o, err := publicsuffix.EffectiveTLDPlusOne(d); err == nil {
		return o
	}
	return d
}

// aligned compares identifier domains as DMARC does (RFC 7489 §3.1).
func aligned(a, b, mode string) bool {
	if mode == "s" {
		return a == b
	}
	return orgDomain(a) == orgDomain(b)
}

// checkDMARC: a DMARC record exists for domain (or its organizational
// domain) and mail from it can align, through DKIM signed as signer
// (when keyOK) or through SPF with domain as return-path (when spfOK).
func checkDMARC(ctx context.Context, r Resolver, domain, signer string, keyOK, spfOK bool) Result {
	res := Result{Check: "DMARC", Subject: domain}
	tags, at, err := dmarcRecord(ctx, r, domain)
	if err != nil {
		res.Status, res.Detail, res.Fix = Warn, fmt.Sprintf("lookup failed: %v", err), "check [dns] servers and retry"
		return res
	}
	if tags == nil {
		res.Status, res.Detail = Fail, "no DMARC record at _dmarc."+domain
		res.Fix = fmt.Sprintf("publish TXT at _dmarc.%s: \"v=DMARC1; p=none; rua=mailto:dmarc@%s\", then tighten p=", domain, domain)
		return res
	}
	p := tags["p"]
	if at != domain && tags["sp"] != "" {
		p = tags["sp"]
	}
	if p != "none" && p != "quarantine" && p != "reject" {
		res.Status, res.Detail = Fail, fmt.Sprintf("record at %s has p=%q: not none, quarantine or reject", at, tags["p"])
		res.Fix = "set p=none, quarantine or reject"
		return res
	}
	adkim, aspf := or(tags["adkim"], "r"), or(tags["aspf"], "r")
	policy := fmt.Sprintf("p=%s adkim=%s aspf=%s (at %s)", p, adkim, aspf, at)
	var ways []string
	if signer != "" && keyOK && aligned(signer, domain, adkim) {
		ways = append(ways, "DKIM d="+signer)
	}
	if spfOK {
		ways = append(ways, "SPF return-path "+domain)
	}
	if len(ways) == 0 {
		res.Status, res.Detail = Fail, policy+": neither DKIM nor SPF can align"
		switch {
		case signer == "":
			res.Fix = "add a [[dkim-key]] for " + domain
		case !aligned(signer, domain, adkim):
			res.Fix = fmt.Sprintf("sign as %s: add a [[dkim-key]] for it (d=%s does not align with adkim=%s)", domain, signer, adkim)
		default:
			res.Fix = "publish the DKIM key of " + signer + " (see the DKIM lines), or authorize every source IP in SPF"
		}
		return res
	}
	res.Status, res.Detail = Pass, policy+"; aligned through "+strings.Join(ways, " and ")
	return res
}

// dmarcRecord finds the DMARC record of domain, falling back to its
// organizational domain (RFC 7489 §6.6.3); nil tags when there is none.
func dmarcRecord(ctx context.Context, r Resolver, domain string) (map[string]string, string, error) {
	for _, d := range []string{domain, orgDomain(domain)} {
		txts, err := r.LookupTXT(ctx, "_dmarc."+d)
		if err != nil && !errors.Is(err, dns.ErrNXDomain) {
			return nil, "", err
		}
		for _, t := range txts {
			tags := map[string]string{}
			for kv := range strings.SplitSeq(t, ";") {
				k, v, _ := strings.Cut(kv, "=")
				tags[strings.ToLower(strings.TrimSpace(k))] = strings.ToLower(strings.TrimSpace(v))
			}
			if tags["v"] == "dmarc1" {
				return tags, "_dmarc." + d, nil
			}
		}
		if d == orgDomain(domain) {
			break
		}
	}
	return nil, "", nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
