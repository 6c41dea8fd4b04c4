package main

import (
	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/admin"
	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/inject"
	"github.com/sluice-mta/sluice/engine/listener"
	"github.com/sluice-mta/sluice/engine/spool"
	"github.com/sluice-mta/sluice/engine/submit"
	"github.com/sluice-mta/sluice/pools"
)

// mountInject serves POST /api/v1/inject on the admin listener (nothing
// without [admin]): the same transforms as SMTP injection, the spool's
// batched synced commit, the VMTA registry and the suppression list. The
// admin token is accepted, and [inject] token if set. Load has read the
// token file already; should it fail now, the route is not served.
func mountInject(cfg *config.Config, adm *admin.Server, sp *spool.Store, q submit.Enqueuer, reg *pools.Registry,
	transforms []submit.Transform, gate listener.Gate, log *zap.Logger) {
	if adm == nil {
		return
	}
	tok, err := cfg.Inject.TokenValue()
	if err != nil {
		log.Error("inject api not served: token-file unreadable", zap.Error(err))
		return
	}
	var sup inject.Suppressor
	if gate != nil {
		sup = gate
	}
	h := inject.NewHandler(inject.Options{
		Hostname:   cfg.Hostname,
		Submit:     &submit.Pipeline{Spool: sp, Queue: q, Transforms: transforms},
		NewID:      sp.NewID,
		VMTAs:      reg,
		Suppressor: sup,
		MaxBody:    cfg.Inject.MaxBody.Bytes(),
		Log:        log,
	})
	adm.Handle("POST /api/v1/inject", h, tok)
}
