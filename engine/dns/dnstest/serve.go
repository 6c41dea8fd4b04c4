package dnstest

import (
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// serve answers one query. It runs on the miekg/dns server's goroutines.
func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 { // the accept func already rejects other counts
		return
	}
	q := req.Question[0]
	name := canonical(q.Name)

	s.mu.Lock()
	s.queries[queryKey{name, q.Qtype}]++
	delay := s.delay[name]
	s.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.closed:
			t.Stop()
			return
		}
	}

	s.mu.Lock()
	if s.drop[name] {
		s.mu.Unlock()
		return // the client times out
	}
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true // RFC 1035 §4.1.1 AA
	if s.servfail[name] {
		resp.Rcode = dns.RcodeServerFailure
	} else {
		s.answerLocked(resp, q, name)
	}
	s.mu.Unlock()

	_, udp := w.LocalAddr().(*net.UDPAddr)
	size := dns.MaxMsgSize
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(bufSize, false) // RFC 6891 §7: answer an OPT with an OPT
		if udp {
			size = min(int(opt.UDPSize()), bufSize) // RFC 6891 §6.2.5
		}
	} else if udp {
		size = dns.MinMsgSize // RFC 1035 §4.2.1: 512 bytes over UDP without EDNS0
	}
	// Drop what does not fit and set TC, so that the client retries over
	// TCP (RFC 1035 §4.2.1, RFC 7766 §5).
	resp.Truncate(size)
	_ = w.WriteMsg(resp)
}

// answerLocked fills resp for a name that is not faulted. s.mu is held.
func (s *Server) answerLocked(resp *dns.Msg, q dns.Question, name string) {
	r := s.names[name]
	if r == nil && !s.hasDescendantLocked(name) {
		resp.Rcode = dns.RcodeNameError // RFC 1035 §4.1.1 NXDOMAIN
		resp.Ns = []dns.RR{s.soaLocked(name)}
		return
	}
	// A name that owns nothing but has descendants is an empty non-terminal:
	// it exists (RFC 8020 §2), so the answer is NODATA, not NXDOMAIN.
	if r != nil {
		resp.Answer = s.rrsLocked(r, q)
	}
	if len(resp.Answer) == 0 {
		resp.Ns = []dns.RR{s.soaLocked(name)} // RFC 2308 §2.2 NODATA
	}
}

func (s *Server) hasDescendantLocked(name string) bool {
	suffix := "." + name
	if name == "." {
		suffix = "."
	}
	for n := range s.names {
		if n != name && strings.HasSuffix(n, suffix) {
			return true
		}
	}
	return false
}

// rrsLocked returns r's records of q's type, owned by q.Name as the client
// spelled it (RFC 4343 §4.1: the case of the question is preserved).
func (s *Server) rrsLocked(r *records, q dns.Question) []dns.RR {
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: s.ttl}
	}
	var rrs []dns.RR
	if q.Qtype == dns.TypeMX || q.Qtype == dns.TypeANY {
		for _, m := range r.mx {
			rrs = append(rrs, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: m.Pref, Mx: m.Host})
		}
	}
	if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
		for _, a := range r.a {
			rrs = append(rrs, &dns.A{Hdr: hdr(dns.TypeA), A: a.AsSlice()})
		}
	}
	if q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY {
		for _, a := range r.aaaa {
			rrs = append(rrs, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	if q.Qtype == dns.TypeTXT || q.Qtype == dns.TypeANY {
		for _, t := range r.txt {
			rrs = append(rrs, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: splitTXT(t)})
		}
	}
	if q.Qtype == dns.TypePTR || q.Qtype == dns.TypeANY {
		for _, p := range r.ptr {
			rrs = append(rrs, &dns.PTR{Hdr: hdr(dns.TypePTR), Ptr: dns.Fqdn(p)})
		}
	}
	return rrs
}

// soaLocked returns the SOA that goes with a negative answer for name. Its
// TTL and MINIMUM are the server's TTL, so a resolver caches the negative
// answer for that long (RFC 2308 §5).
func (s *Server) soaLocked(name string) dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zoneOf(name), Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.ttl},
		Ns:      "ns.dnstest.",
		Mbox:    "hostmaster.dnstest.",
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  s.ttl,
	}
}

// zoneOf guesses the zone apex of name: its last two labels. The server has
// no zones; the SOA owner only has to look plausible.
func zoneOf(name string) string {
	labels := dns.SplitDomainName(name)
	if len(labels) <= 2 {
		return name
	}
	return dns.Fqdn(strings.Join(labels[len(labels)-2:], "."))
}

// splitTXT cuts t into character-strings of at most 255 bytes
// (RFC 1035 §3.3.14).
func splitTXT(t string) []string {
	if t == "" {
		return []string{""}
	}
	var parts []string
	for len(t) > 255 {
		parts = append(parts, t[:255])
		t = t[255:]
	}
	return append(parts, t)
}
