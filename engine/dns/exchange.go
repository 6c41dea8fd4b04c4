package dns

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// exchange asks the servers in order, Attempts rounds over the list, and
// returns the first answer that is NOERROR or NXDOMAIN. The error says why
// the last server gave none.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true   // RFC 1035 §4.1.1: the servers are recursive resolvers
	m.SetEdns0(ednsSize, false) // RFC 6891 §6.1.1
	var errs []error
	for range r.attempts {
		for _, srv := range r.servers {
			if err := ctx.Err(); err != nil {
				return nil, errors.Join(append(errs, err)...)
			}
			m.Id = dns.Id() // a fresh ID per query (RFC 5452 §9.2)
			resp, err := r.exchangeOne(ctx, m, srv)
			if err == nil {
				return resp, nil
			}
			err = fmt.Errorf("%s: %w", srv, err)
			if ce := r.log.Check(zap.DebugLevel, "dns query failed"); ce != nil {
				ce.Write(zap.String("name", name), zap.String("type", typeName(qtype)), zap.Error(err))
			}
			if len(errs) < 4 { // keep the cause short
				errs = append(errs, err)
			}
		}
	}
	return nil, errors.Join(errs...)
}

// exchangeOne asks one server, over UDP and then over TCP if the UDP answer
// was truncated (RFC 1035 §4.2.1, RFC 7766 §5), each within Timeout.
func (r *Resolver) exchangeOne(ctx context.Context, m *dns.Msg, srv string) (*dns.Msg, error) {
	resp, err := r.ask(ctx, r.udp, m, srv)
	if err != nil {
		return nil, err
	}
	if resp.Truncated {
		if resp, err = r.ask(ctx, r.tcp, m, srv); err != nil {
			return nil, fmt.Errorf("tcp after truncated udp answer: %w", err)
		}
	}
	if err := check(m, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func (r *Resolver) ask(ctx context.Context, c *dns.Client, m *dns.Msg, srv string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	resp, _, err := c.ExchangeContext(ctx, m, srv)
	return resp, err
}

// check accepts resp as an answer to m, or says why it is none: a failure
// RCODE, a reply to another question, or a referral from a server that does
// not recurse.
func check(m, resp *dns.Msg) error {
	if len(resp.Question) != 1 ||
		!strings.EqualFold(resp.Question[0].Name, m.Question[0].Name) ||
		resp.Question[0].Qtype != m.Question[0].Qtype {
		return fmt.Errorf("%w: answer to another question", ErrServer) // RFC 5452 §9.1
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default: // SERVFAIL, REFUSED, FORMERR, NOTIMP…: let the next server try
		return fmt.Errorf("%w: rcode %s", ErrServer, dns.RcodeToString[resp.Rcode])
	}
	if resp.Rcode == dns.RcodeSuccess && len(resp.Answer) == 0 && !resp.Authoritative && !resp.RecursionAvailable {
		for _, rr := range resp.Ns {
			if rr.Header().Rrtype == dns.TypeNS {
				// RFC 1034 §5.3.1: a stub resolver needs a recursive server;
				// a referral is not an answer.
				return fmt.Errorf("%w: referral from a non-recursive server", ErrServer)
			}
		}
	}
	return nil
}
