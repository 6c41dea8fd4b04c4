package main

import (
	"context"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/bounce"
	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/listener"
	"github.com/sluice-mta/sluice/engine/queue"
	"github.com/sluice-mta/sluice/pools"
)

// Reload: SIGHUP or POST /api/v1/reload reads the config file again. A file
// that does not load (a syntax or validation error) is refused with that
// error and the running config stays in force. A good file takes effect at
// once, without closing a connection, for:
//
//   - [domain.*], [virtual-mta] domain overrides and [mx-rollup]: shaping,
//     retries, bounce-after, routes (existing queues are reconfigured);
//   - [[smtp-pattern-list.*]] and [[bounce-rule]];
//   - [[virtual-mta-pool]] members and weights (among existing VMTAs);
//   - [[source]] and [[smtp-user]]: new sessions match the new sources,
//     AUTH checks the new users (a larger max-message-size needs a restart);
//   - [admin] token / token-file.
//
// Everything else (listeners, spool-dir, log-dir,
// log, dns, delivery, redis, acct, VMTAs and pools added or removed, the
// admin listen address, hostname, and the other helpers' sections) needs
// a restart: a reload names what it left unapplied and logs it.

// liveConfig is the config the components read on every use; a reload
// swaps it.
type liveConfig struct {
	cur atomic.Pointer[config.Config]
	cls atomic.Pointer[bounce.Classifier]
}

func newLiveConfig(cfg *config.Config) *liveConfig {
	l := &liveConfig{}
	l.set(cfg)
	return l
}

func (l *liveConfig) set(cfg *config.Config) {
	var rules []bounce.Rule
	for _, r := range cfg.BounceRules {
		rules = append(rules, bounce.Rule{Pattern: r.Pattern.Regexp, Category: r.Category})
	}
	l.cls.Store(bounce.NewClassifier(rules))
	l.cur.Store(cfg)
}

// Config returns the config in force.
func (l *liveConfig) Config() *config.Config { return l.cur.Load() }

// DomainForVMTA is queue.Options.Domains.
func (l *liveConfig) DomainForVMTA(domain, vmta string) config.DomainSettings {
	return l.cur.Load().DomainForVMTA(domain, vmta)
}

// Rules is queue.Options.Rules.
func (l *liveConfig) Rules(list string) []config.PatternRule { return l.cur.Load().Rules(list) }

// RollupFor is queue.Options.Rollup.
func (l *liveConfig) RollupFor(mxHosts []string) string { return l.cur.Load().RollupFor(mxHosts) }

// Classify is queue.Options.Classifier: the built-in rules and [[bounce-rule]].
func (l *liveConfig) Classify(code int, status, text string) string {
	return l.cls.Load().Classify(code, status, text)
}

// reloader applies a new config to the running components.
type reloader struct {
	path string
	live *liveConfig
	log  *zap.Logger

	// apply hooks run after the swap, in order; each returns what it could
	// not apply (needs a restart).
	apply []func(cfg *config.Config) []string

	mu sync.Mutex // one reload at a time
}

// onReload adds a hook that applies a reloaded config to a component and
// returns what it could not apply.
func (r *reloader) onReload(fn func(cfg *config.Config) []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.apply = append(r.apply, fn)
}

// Reload loads the file and, if it is valid, puts it in force. It returns
// the changes that need a restart.
func (r *reloader) Reload(ctx context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, err := config.Load(r.path)
	if err != nil {
		r.log.Error("config reload refused, the running config stays", zap.Error(err))
		return nil, err
	}
	old := r.live.Config()
	restart := restartOnly(old, cfg)
	r.live.set(cfg)
	for _, fn := range r.apply {
		restart = append(restart, fn(cfg)...)
	}
	if len(restart) > 0 {
		r.log.Warn("config reloaded; some changes need a restart", zap.Strings("needs_restart", restart))
	} else {
		r.log.Info("config reloaded")
	}
	return restart, nil
}

// restartOnly names the top-level settings that differ between a and b and
// take effect only at start.
func restartOnly(a, b *config.Config) []string {
	var out []string
	ta, va, vb := reflect.TypeOf(*a), reflect.ValueOf(*a), reflect.ValueOf(*b)
	for i := range ta.NumField() {
		f := ta.Field(i)
		key := f.Tag.Get("toml")
		switch key {
		case "", "-", "domain", "mx-rollup", "smtp-pattern-list", "bounce-rule", "virtual-mta", "virtual-mta-pool", "admin",
			"source", "smtp-user":
			continue // applied (VMTAs and pools: pools.Reweight says what it cannot)
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, key)
		}
	}
	switch {
	case (a.Admin == nil) != (b.Admin == nil):
		out = append(out, "admin")
	case a.Admin != nil && a.Admin.Listen != b.Admin.Listen:
		out = append(out, "admin.listen")
	case a.Admin != nil && a.Admin.MetricsPublic != b.Admin.MetricsPublic:
		out = append(out, "admin.metrics-public")
	}
	return out
}

// applyReload is the reload hook of the scheduler, the pools and the
// listener.
func applyReload(sch *queue.Scheduler, reg *pools.Registry, in *listener.Server) func(cfg *config.Config) []string {
	return func(cfg *config.Config) []string {
		sch.Reconfigure() // the live config's domain settings, onto existing queues
		restart := reg.Reweight(cfg)
		more, err := in.SetPolicy(cfg.Sources, cfg.SMTPUsers)
		if err != nil { // Load has validated them: not expected
			return append(restart, "source/smtp-user: "+err.Error())
		}
		return append(restart, more...)
	}
}

// watchSIGHUP reloads on every SIGHUP until ctx ends; stop waits for it.
func watchSIGHUP(ctx context.Context, r *reloader) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				r.log.Info("SIGHUP: reloading the config", zap.String("path", r.path))
				r.Reload(ctx)
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		cancel()
		<-done
	}
}
