package listener

import (
	"fmt"

	"github.com/sluice-mta/sluice/engine/config"
)

// Sessions returns how many SMTP sessions are open now, for the admin API.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// SetPolicy replaces the sources and SMTP users (a config reload). A
// session already open keeps the source it matched when it connected; its
// AUTH and its next messages use the new users. The servers' message size
// ceiling is fixed at start: a max-message-size above it is reported as
// needing a restart (messages stay capped at the ceiling until then).
func (s *Server) SetPolicy(sources []config.Source, users []config.SMTPUser) (restart []string, err error) {
	p, err := newPolicy(sources, users)
	if err != nil {
		return nil, err
	}
	if old := s.policy.Load(); p.maxSize > old.maxSize {
		restart = append(restart, fmt.Sprintf("source max-message-size above %d bytes", old.maxSize))
		p.maxSize = old.maxSize
	}
	s.policy.Store(p)
	return restart, nil
}
