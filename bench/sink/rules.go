package sink

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Kind is what a rule makes the sink do.
type Kind int

// The kinds of rule.
const (
	Reply   Kind = iota // answer RCPT TO with Code and Text (421 also closes)
	Drop                // read the whole DATA, then close without a reply
	Garbage             // answer the end of DATA with a malformed line, then close
	Tarpit              // wait the sink's TarpitDelay before the final 250
)

// Rule is one entry of a domain's reply mix: with probability Pct percent,
// per recipient (Reply) or per message (the others), do Kind.
type Rule struct {
	Pct  float64
	Kind Kind
	Code int    // Reply only
	Text string // Reply only: "4.7.28 Try again later"
}

// ParseRule parses "DOMAIN:PCT%:ACTION", where ACTION is a reply such as
// "421 4.7.28 Try again later", or one of drop, garbage, tarpit. DOMAIN "*"
// applies to every domain that has no rules of its own.
func ParseRule(s string) (domain string, r Rule, err error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 {
		return "", r, fmt.Errorf("rule %q: want DOMAIN:PCT%%:ACTION", s)
	}
	domain = strings.ToLower(strings.TrimSpace(parts[0]))
	pct, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(parts[1]), "%"), 64)
	if err != nil || pct < 0 || pct > 100 {
		return "", r, fmt.Errorf("rule %q: bad percentage %q", s, parts[1])
	}
	r.Pct = pct
	action := strings.TrimSpace(parts[2])
	switch strings.ToLower(action) {
	case "drop":
		r.Kind = Drop
	case "garbage":
		r.Kind = Garbage
	case "tarpit":
		r.Kind = Tarpit
	default:
		code, text, _ := strings.Cut(action, " ")
		c, err := strconv.Atoi(code)
		if err != nil || c < 200 || c > 599 {
			return "", r, fmt.Errorf("rule %q: action must be drop, garbage, tarpit or \"NNN text\"", s)
		}
		r.Kind, r.Code, r.Text = Reply, c, strings.TrimSpace(text)
	}
	if domain == "" {
		return "", r, fmt.Errorf("rule %q: empty domain", s)
	}
	return domain, r, nil
}

// Rules maps a lower-case domain (or "*") to its reply mix.
type Rules map[string][]Rule

// Add parses a rule (see ParseRule) and adds it.
func (rs Rules) Add(spec string) error {
	d, r, err := ParseRule(spec)
	if err != nil {
		return err
	}
	rs[d] = append(rs[d], r)
	return nil
}

// pick returns the rule that fires for domain among rules of the given
// kinds (reply or message-level), or nil: one roll, rules stacked in order.
func (rs Rules) pick(rng *rand.Rand, domain string, perRcpt bool) *Rule {
	list, ok := rs[domain]
	if !ok {
		list = rs["*"]
	}
	if len(list) == 0 {
		return nil
	}
	roll := rng.Float64() * 100
	acc := 0.0
	for i := range list {
		r := &list[i]
		if (r.Kind == Reply) != perRcpt {
			continue
		}
		acc += r.Pct
		if roll < acc {
			return r
		}
	}
	return nil
}
