package listener

import (
	"crypto/subtle"
	"net/netip"
	"sort"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/sluice-mta/sluice/engine/config"
)

// policy answers "what may this client do": its source settings (most
// specific CIDR wins) and whether a name and password are right.
type policy struct {
	sources  []config.Source // longest prefix first
	users    map[string]string
	userVMTA map[string]string // a user's default-virtual-mta
	maxSize  int64             // the largest max-message-size of any source
}

func newPolicy(sources []config.Source, users []config.SMTPUser) (*policy, error) {
	p := &policy{users: make(map[string]string), userVMTA: make(map[string]string), maxSize: DefaultMaxMessageSize}
	p.sources = append(p.sources, sources...)
	sort.SliceStable(p.sources, func(i, j int) bool {
		return p.sources[i].CIDR.Bits() > p.sources[j].CIDR.Bits()
	})
	for _, s := range p.sources {
		if n := s.MaxMessageSize.Bytes(); n > p.maxSize {
			p.maxSize = n
		}
	}
	for _, u := range users {
		p.users[u.Name] = u.Password
		p.userVMTA[u.Name] = u.DefaultVirtualMTA
	}
	return p, nil
}

// source returns the settings for a client address; no match gives the
// zero Source: no relaying, no header processing.
func (p *policy) source(ip netip.Addr) config.Source {
	ip = ip.Unmap()
	for _, s := range p.sources {
		if s.CIDR.IsValid() && s.CIDR.Contains(ip) {
			return s
		}
	}
	return config.Source{}
}

// maxSizeFor is the effective message size limit for a source.
func maxSizeFor(s config.Source) int64 {
	if n := s.MaxMessageSize.Bytes(); n > 0 {
		return n
	}
	return DefaultMaxMessageSize
}

// checkPassword compares in constant time for plain-text passwords and with
// bcrypt for $2a$/$2b$/$2y$ hashes. Unknown users cost the same as known ones.
func (p *policy) checkPassword(name, password string) bool {
	want, ok := p.users[name]
	if !ok {
		// Burn comparable time so that unknown names are not distinguishable.
		subtle.ConstantTimeCompare([]byte(password), []byte(password))
		return false
	}
	if strings.HasPrefix(want, "$2a$") || strings.HasPrefix(want, "$2b$") || strings.HasPrefix(want, "$2y$") {
		return bcrypt.CompareHashAndPassword([]byte(want), []byte(password)) == nil
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(password)) == 1
}
