package listener

import (
	"errors"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// RFC 4954 §6: 538 5.7.11 when the mechanism needs an encrypted channel.
var errEncryptionRequired = &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11},
	Message: "Encryption required for requested authentication mechanism"}

// RFC 4954 §6: 535 5.7.8 for bad credentials.
var errAuthFailed = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
	Message: "Authentication credentials invalid"}

// AuthMechanisms offers PLAIN and LOGIN only over TLS, or in clear text to
// sources with allow-unencrypted-plain-auth (RFC 4954 §4).
func (s *session) AuthMechanisms() []string {
	if !s.authAllowed() {
		return nil
	}
	return []string{sasl.Plain, "LOGIN"}
}

func (s *session) authAllowed() bool {
	return (s.tls || s.src.AllowUnencryptedPlainAuth) && len(s.srv.policy.Load().users) > 0
}

// Auth starts a SASL exchange for mech.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if s.srv.authLimit.blocked(s.ip, s.srv.opts.Now()) {
		time.Sleep(s.srv.opts.AuthDelay)
		return nil, errAuthThrottled // 421: the session ends
	}
	if !s.authAllowed() {
		if len(s.srv.policy.Load().users) == 0 {
			return nil, smtp.ErrAuthUnsupported
		}
		return nil, errEncryptionRequired
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return s.authFail(username)
			}
			return s.login(username, password)
		}), nil
	case "LOGIN":
		return &loginServer{check: s.login}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *session) login(username, password string) error {
	if s.srv.policy.Load().checkPassword(username, password) {
		s.authUser = username
		return nil
	}
	return s.authFail(username)
}

// authFail delays the answer to slow down password guessing.
func (s *session) authFail(username string) error {
	s.log.Info("auth failed", zapUser(username))
	time.Sleep(s.srv.opts.AuthDelay)
	if s.srv.authLimit.fail(s.ip, s.srv.opts.Now()) {
		s.log.Warn("auth throttled", zapUser(username)) // authMaxFailures within authWindow
		return errAuthThrottled
	}
	return errAuthFailed
}

// loginServer implements the de-facto LOGIN mechanism
// (draft-murchison-sasl-login): two challenges, "Username:" and "Password:".
type loginServer struct {
	check    func(user, pass string) error
	user     string
	step     int
	finished bool
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step++
		if len(response) > 0 { // initial response carries the user name
			l.user = string(response)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(response)
		l.step++
		return []byte("Password:"), false, nil
	case 2:
		l.step++
		return nil, true, l.check(l.user, string(response))
	}
	return nil, false, errors.New("unexpected LOGIN response")
}
