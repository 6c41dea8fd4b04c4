package main

import (
	"crypto/ed25519"
	"crypto/rsa"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/dkim"
	"github.com/sluice-mta/sluice/engine/submit"
)

// newDKIM returns the signer of the configured [[dkim-key]]s, or nil when
// there are none. Load has already read and checked the keys.
func newDKIM(cfg *config.Config, log *zap.Logger) (*dkim.Signer, error) {
	if len(cfg.DKIMKeys) == 0 {
		return nil, nil
	}
	opts := dkim.Options{DefaultDomain: cfg.DKIM.DefaultDomain}
	for _, k := range cfg.DKIMKeys {
		opts.Keys = append(opts.Keys, dkim.Key{Domain: k.Domain, Selector: k.Selector, Signer: k.Signer()})
		// Where the key is and what it is, never the key itself.
		log.Info("dkim key", zap.String("domain", k.Domain), zap.String("selector", k.Selector),
			zap.String("key_file", k.KeyFile), zap.String("type", keyType(k)))
	}
	s, err := dkim.New(opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func keyType(k config.DKIMKey) string {
	switch k.Signer().(type) {
	case *rsa.PrivateKey:
		return "rsa"
	case ed25519.PrivateKey:
		return "ed25519"
	}
	return "unknown"
}

// signLast puts the DKIM transform after every other one: the signature
// must cover the headers they add (List-Unsubscribe, Feedback-ID, the
// trace header), and nothing may change the message after it.
func signLast(ts []submit.Transform, sign *dkim.Signer) []submit.Transform {
	if sign == nil {
		return ts
	}
	return append(ts[:len(ts):len(ts)], sign)
}

// signDSN returns the function that signs the failure reports the
// scheduler writes (From: MAILER-DAEMON@hostname: signed with the
// hostname's keys, or the default domain's), or nil without keys.
func signDSN(sign *dkim.Signer) func([]byte) ([]byte, error) {
	if sign == nil {
		return nil
	}
	return sign.Sign
}
