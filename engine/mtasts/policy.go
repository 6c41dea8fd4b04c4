// Package mtasts implements the sending side of SMTP MTA Strict Transport
// Security (RFC 8461): it discovers a domain's policy through its
// _mta-sts TXT record, fetches it over verified HTTPS, caches it by id and
// max_age, and says which MX hosts the policy allows. It never decides
// delivery itself; engine/queue does, with the verified TLS state of
// engine/delivery.
package mtasts

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Mode is a policy's mode (RFC 8461 §5).
type Mode string

// Policy modes.
const (
	Enforce Mode = "enforce" // deliver only to matching MX hosts over verified TLS
	Testing Mode = "testing" // report failures, deliver anyway
	None    Mode = "none"    // no policy
)

// maxMaxAge is the largest max_age honoured (RFC 8461 §3.2: about a year).
const maxMaxAge = 31557600 * time.Second

// maxPolicyBytes caps a policy body (RFC 8461 §3.3 suggests 64 KiB).
const maxPolicyBytes = 64 << 10

// Policy is one domain's parsed policy.
type Policy struct {
	ID     string // the TXT record's id when it was fetched
	Mode   Mode
	MX     []string // host patterns: "mx.example.com" or "*.example.com"
	MaxAge time.Duration
}

// Parse reads a policy body (RFC 8461 §3.2): "key: value" lines ending in
// CRLF or LF. version must be STSv1, mode and max_age are required, and mx
// at least once unless the mode is none. Unknown keys are ignored.
func Parse(body []byte) (*Policy, error) {
	if len(body) > maxPolicyBytes {
		return nil, errors.New("mtasts: policy larger than 64 KiB")
	}
	p := &Policy{}
	var version, maxAge string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 1024), maxPolicyBytes)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("mtasts: policy line %q has no colon", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "version":
			version = v
		case "mode":
			p.Mode = Mode(v)
		case "max_age":
			maxAge = v
		case "mx":
			p.MX = append(p.MX, strings.ToLower(strings.TrimSuffix(v, ".")))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mtasts: %w", err)
	}
	if version != "STSv1" {
		return nil, fmt.Errorf("mtasts: version %q, want STSv1", version)
	}
	switch p.Mode {
	case Enforce, Testing, None:
	default:
		return nil, fmt.Errorf("mtasts: mode %q is not enforce, testing or none", p.Mode)
	}
	n, err := strconv.ParseUint(maxAge, 10, 64)
	if err != nil || len(maxAge) > 10 {
		return nil, fmt.Errorf("mtasts: max_age %q is not a number of seconds", maxAge)
	}
	p.MaxAge = min(time.Duration(n)*time.Second, maxMaxAge)
	if len(p.MX) == 0 && p.Mode != None {
		return nil, errors.New("mtasts: policy has no mx")
	}
	return p, nil
}

// Match reports whether the MX host name is allowed (RFC 8461 §4.1): equal
// to a pattern, or matching "*.rest" with exactly one more label on the left.
func (p *Policy) Match(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			label, tail, found := strings.Cut(host, ".")
			if found && label != "" && tail == rest {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// parseTXT returns the id of an MTA-STS TXT record (RFC 8461 §3.1):
// "v=STSv1; id=...;" with v first; ok is false for records of other kinds.
func parseTXT(txt string) (id string, ok bool, err error) {
	fields := strings.Split(txt, ";")
	if strings.TrimSpace(fields[0]) != "v=STSv1" {
		return "", false, nil
	}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		if k == "id" {
			id = v
		}
	}
	if id == "" || len(id) > 32 || strings.IndexFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) >= 0 {
		return "", true, fmt.Errorf("mtasts: TXT id %q is not 1–32 letters and digits", id)
	}
	return id, true, nil
}
