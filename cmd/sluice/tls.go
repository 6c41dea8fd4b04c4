package main

import (
	"crypto/x509"
	"fmt"
	"os"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/dns"
	"github.com/sluice-mta/sluice/engine/mtasts"
)

// outboundTLS builds what outbound TLS needs from [tls]: the roots that
// verify MX and policy hosts (nil: the system's) and the MTA-STS policy
// cache, which resolves policy hosts through res.
func outboundTLS(cfg *config.Config, res *dns.Resolver, log *zap.Logger) (*x509.CertPool, *mtasts.Cache, error) {
	var roots *x509.CertPool
	if f := cfg.TLS.CAFile; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: tls.ca-file: %w", cfg.Path, err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("%s: tls.ca-file: %s holds no PEM certificate", cfg.Path, f)
		}
	}
	sts := mtasts.New(mtasts.Options{
		Resolver: res,
		RootCAs:  roots,
		Port:     cfg.TLS.Port(),
		Timeout:  cfg.TLS.Timeout(),
		Log:      log,
	})
	return roots, sts, nil
}
