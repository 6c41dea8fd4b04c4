package main

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/acct"
	"github.com/sluice-mta/sluice/engine/admin"
	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/listener"
	"github.com/sluice-mta/sluice/engine/queue"
	"github.com/sluice-mta/sluice/pools"
	"github.com/sluice-mta/sluice/throttle"
)

// startAdmin listens on [admin] listen and serves the admin API; it returns
// nil when the config has no [admin] table. Other components mount their
// routes on the result with Handle (nil-checked). stop is idempotent.
func startAdmin(cfg *config.Config, log *zap.Logger) (adm *admin.Server, stop func(), err error) {
	if cfg.Admin == nil {
		return nil, func() {}, nil
	}
	tok, err := cfg.Admin.TokenValue()
	if err != nil {
		return nil, nil, fmt.Errorf("admin token-file: %w", err)
	}
	adm = admin.New(admin.Options{Listen: cfg.Admin.Listen, Token: tok, Log: log})
	if err := adm.Start(cfg.Admin.Listen); err != nil {
		return nil, nil, fmt.Errorf("admin listen %s: %w", cfg.Admin.Listen, err)
	}
	log.Info("admin api listening", zap.String("addr", adm.Addr().String()))
	stopped := false
	return adm, func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		adm.Shutdown(ctx)
	}, nil
}

// newTracker counts accounting records for the admin API (traffic, queue
// events, jobs).
func newTracker(aw *acct.Writer) *admin.Tracker {
	t := admin.NewTracker(nil)
	aw.Observe(t.Observe)
	return t
}

// adminDeps are the components the admin API reports on and controls.
type adminDeps struct {
	cfg      *config.Config
	tracker  *admin.Tracker
	sch      *queue.Scheduler
	reg      *pools.Registry
	shaper   throttle.Backend
	in       *listener.Server
	reloader *reloader
}

// mountAdmin registers the /api/v1/ endpoints on adm (nothing when nil).
func mountAdmin(adm *admin.Server, d adminDeps) {
	if adm == nil {
		return
	}
	api := &admin.API{
		Scheduler:  d.sch,
		VMTAs:      d.reg,
		Tracker:    d.tracker,
		Hostname:   d.cfg.Hostname,
		Version:    version,
		SpoolDir:   d.cfg.SpoolDir,
		SessionsIn: d.in.Sessions,
		Redis:      func() string { return redisState(d.cfg, d.shaper) },
		Reload:     d.reloader.Reload,
	}
	api.Mount(adm)
}

// redisState is "off" without [redis], else "up", or "degraded" while the
// failover runs on local limits.
func redisState(cfg *config.Config, b throttle.Backend) string {
	if !cfg.Redis.Enabled() {
		return "off"
	}
	if d, ok := b.(interface{ Degraded() bool }); ok && d.Degraded() {
		return "degraded"
	}
	return "up"
}

// adminReload is the reload hook of the admin server: a new token.
func adminReload(adm *admin.Server) func(cfg *config.Config) []string {
	return func(cfg *config.Config) []string {
		if adm == nil || cfg.Admin == nil {
			return nil
		}
		tok, err := cfg.Admin.TokenValue()
		if err != nil {
			return []string{"admin.token-file: " + err.Error()}
		}
		adm.SetToken(tok)
		return nil
	}
}
