package listener

import (
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// AUTH failure throttling: after authMaxFailures failed AUTH attempts within
// authWindow from one client address, every further AUTH from it, on any
// session, is answered 421 4.7.0 after the failure delay and the session is
// closed (RFC 5321 §3.8), until the window has passed. The delay and the
// close make password guessing slow and expensive for the guesser.
const (
	authMaxFailures = 5
	authWindow      = time.Minute
	authMaxTracked  = 100_000 // addresses remembered; bounds memory under a spray
)

var errAuthThrottled = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
	Message: "too many authentication failures from your address, try again later"}

// authLimiter counts recent AUTH failures per client address.
type authLimiter struct {
	mu    sync.Mutex
	fails map[netip.Addr][]time.Time // recent failures, oldest first, at most authMaxFailures
}

func newAuthLimiter() *authLimiter { return &authLimiter{fails: map[netip.Addr][]time.Time{}} }

// recent returns ip's failures within the window; a.mu is held.
func (a *authLimiter) recent(ip netip.Addr, now time.Time) []time.Time {
	f := a.fails[ip]
	for len(f) > 0 && now.Sub(f[0]) > authWindow {
		f = f[1:]
	}
	if len(f) == 0 {
		delete(a.fails, ip)
		return nil
	}
	a.fails[ip] = f
	return f
}

// blocked reports whether ip has used up its failures.
func (a *authLimiter) blocked(ip netip.Addr, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.recent(ip, now)) >= authMaxFailures
}

// fail records a failure and reports whether ip is now blocked.
func (a *authLimiter) fail(ip netip.Addr, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.recent(ip, now)
	if f == nil && len(a.fails) >= authMaxTracked {
		for k := range a.fails { // drop the stale, then anyone: memory stays bounded
			a.recent(k, now)
		}
		for k := range a.fails {
			if len(a.fails) < authMaxTracked {
				break
			}
			delete(a.fails, k)
		}
	}
	f = append(f, now)
	if len(f) > authMaxFailures {
		f = f[len(f)-authMaxFailures:]
	}
	a.fails[ip] = f
	return len(f) >= authMaxFailures
}
