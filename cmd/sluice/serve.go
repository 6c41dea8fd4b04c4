package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sluice-mta/sluice/engine/acct"
	"github.com/sluice-mta/sluice/engine/bounce"
	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/dns"
	"github.com/sluice-mta/sluice/engine/listener"
	"github.com/sluice-mta/sluice/engine/queue"
	"github.com/sluice-mta/sluice/engine/submit"
	"github.com/sluice-mta/sluice/pools"
)

// errLogged marks an error already reported through the logger.
var errLogged = errors.New("logged")

func checkConfig(path string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK (%d listener(s), %d source(s), %d domain block(s))\n",
		cfg.Path, len(cfg.Listeners), len(cfg.Sources), len(cfg.Domains))
	return 0
}

func newLogger(c config.Log, w io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, err
	}
	var enc zapcore.Encoder
	if c.Format == "console" {
		ec := zap.NewDevelopmentEncoderConfig()
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), level)), nil
}

// serve wires the components once and runs them until ctx ends (SIGTERM):
// then the listeners stop accepting, transactions in flight finish within
// shutdown-timeout, and everything else stays in the spool.
func serve(ctx context.Context, path string, stderr io.Writer) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	defer log.Sync()
	setProcs(log) // procs.go: spare Ps for the time fsyncs hold theirs

	// The admin API listens first, so a taken port stops the start before
	// anything else runs; components mount their routes on adm as they are
	// wired (adm is nil without [admin]).
	adm, stopAdmin, err := startAdmin(cfg, log.Named("admin"))
	if err != nil {
		return err
	}
	defer stopAdmin()
	// SIGHUP and `sluice reload` swap the live config (reload.go).
	live := newLiveConfig(cfg)
	rl := &reloader{path: path, live: live, log: log.Named("reload")}
	defer watchSIGHUP(ctx, rl)()
	rl.onReload(adminReload(adm))

	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return fmt.Errorf("log-dir: %w", err)
	}
	sp, err := openSpool(cfg, log.Named("spool")) // spoolcrypt.go: encryption at rest
	if err != nil {
		return err
	}
	defer sp.Close()

	aw, err := acct.Open(acct.Options{Dir: cfg.LogDir, Records: cfg.Acct.Records, HeaderFields: cfg.Acct.HeaderFields,
		MaxSize: cfg.AcctFile.MaxSize.Bytes(), MoveInterval: cfg.AcctFile.MoveInterval.D(), DeleteAfter: cfg.AcctFile.DeleteAfter.D()},
		log.Named("acct"))
	if err != nil {
		return fmt.Errorf("acct: %w", err)
	}
	acctCtx, stopAcct := context.WithCancel(context.Background())
	acctDone := make(chan struct{})
	go func() { defer close(acctDone); aw.Run(acctCtx) }()
	defer func() { stopAcct(); <-acctDone; aw.Close() }()
	track := newTracker(aw) // counts for the admin API (admin.go)
	// Metrics, the web monitor and the event webhook (observe.go).
	obs, err := startObservability(cfg, aw, adm, log.Named("metrics"))
	if err != nil {
		return err
	}
	defer obs.Close()

	res, err := dns.New(dns.Config{Servers: cfg.DNS.Servers, Timeout: cfg.DNS.Timeout.D()}, log.Named("dns"))
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	tlsRoots, sts, err := outboundTLS(cfg, res, log.Named("mta-sts")) // tls.go
	if err != nil {
		return err
	}
	defer sts.Close()
	sign, err := newDKIM(cfg, log.Named("dkim"))
	if err != nil {
		return err
	}
	// Transforms of each accepted message before it is spooled: header
	// additions go here; signLast puts DKIM signing after them.
	var transforms []submit.Transform

	var rules []bounce.Rule
	for _, r := range cfg.BounceRules {
		rules = append(rules, bounce.Rule{Pattern: r.Pattern.Regexp, Category: r.Category})
	}
	// Feedback loops and suppression (fbl.go): its header transforms go
	// before DKIM signing.
	fb, err := startFBL(cfg, sp, aw, bounce.NewClassifier(rules), adm, log.Named("fbl"))
	if err != nil {
		return err
	}
	defer fb.Close()
	transforms = append(transforms, fb.Transforms...)
	shaper, err := newThrottle(cfg.Redis, log.Named("throttle"))
	if err != nil {
		return err
	}
	defer shaper.Close()
	shaper = obs.wrapThrottle(cfg, shaper) // counts throttle waits
	// Warm-up counts live in the spool database, or in Redis for the fleet.
	var counters pools.Counters = sp
	if cfg.Redis.Enabled() {
		counters = sharedCounters{shaper}
	}
	reg := pools.New(cfg, pools.Options{Counters: counters, Log: log.Named("pools")})
	reg.LogWarmup()
	if len(cfg.VirtualMTAs) > 0 {
		// A warning only: check forward-confirmed reverse DNS off the start path.
		ptrCtx, stopPTR := context.WithTimeout(ctx, 30*time.Second)
		ptrDone := make(chan struct{})
		go func() { defer close(ptrDone); reg.CheckReverseDNS(ptrCtx, res.LookupPTR) }()
		defer func() { stopPTR(); <-ptrDone }()
	}
	host, _ := os.Hostname()
	idle := time.Duration(0) // the scheduler's default linger
	if cfg.Redis.Enabled() {
		// A connection that lingers for more mail holds a slot of the whole
		// fleet: with shared limits, give it back quickly.
		idle = 100 * time.Millisecond
	}
	sch := queue.New(queue.Options{
		Throttle:    shaper,
		Shared:      cfg.Redis.Enabled(),
		IdleTimeout: idle,
		Rollup:      live.RollupFor,
		NodeID:      fmt.Sprintf("%s-%d", host, os.Getpid()),
		Hostname:    cfg.Hostname,
		Pools:       reg,
		Domains:     live.DomainForVMTA,
		Rules:       live.Rules,
		Delivery:    cfg.Delivery,
		STS:         sts,
		TLSRoots:    tlsRoots,
		Store:       sp,
		Resolver:    res,
		Acct:        aw,
		Decorate:    fb.Decorate,   // the per-recipient trace header
		SignDSN:     signDSN(sign), // dkim.go
		Classifier:  live,          // the built-in rules and [[bounce-rule]], reloadable
		Log:         log.Named("queue"),
	})
	fb.SetQueue(sch) // hold jobs, cancel mail to suppressed addresses
	sch.Start()
	in, err := listener.New(cfg.Listeners, listener.Options{
		Hostname: cfg.Hostname,
		Sources:  cfg.Sources,
		Users:    cfg.SMTPUsers,
		Spool:    sp,
		Queue:    sch,
		VMTAs:    reg,
		Log:      log.Named("listener"),

		Transforms: signLast(transforms, sign),
		Gate:       fb.Gate, // report addresses, suppressed recipients
	})
	if err == nil {
		err = in.Listen(cfg.Listeners)
	}
	if err == nil {
		obs.attach(sch, in) // queue depth and connection gauges
	}
	if err != nil {
		sch.Stop(context.Background())
		return err
	}
	rl.onReload(applyReload(sch, reg, in))
	mountAdmin(adm, adminDeps{cfg: cfg, tracker: track, sch: sch, reg: reg, shaper: shaper, in: in, reloader: rl})
	mountInject(cfg, adm, sp, sch, reg, signLast(transforms, sign), fb.Gate, log.Named("inject")) // inject_wire.go
	log.Info("sluice started", zap.String("hostname", cfg.Hostname), zap.String("version", version))
	if adm != nil {
		adm.SetReady(true)
	}

	// Recovery runs while the listener already accepts: Scan returns only
	// messages this process did not Put itself, so nothing is queued twice,
	// and a large backlog does not keep injection waiting.
	recovered := make(chan error, 1)
	go func() {
		t0 := time.Now()
		n, err := sch.Recover()
		if err != nil {
			log.Error("spool recovery failed", zap.Error(err))
		} else {
			log.Info("spool recovered", zap.Int("messages", n), zap.Duration("took", time.Since(t0)))
		}
		recovered <- err
	}()

	var recErr error
	recDone := false
	select {
	case <-ctx.Done():
	case recErr = <-recovered:
		recDone = true
		if recErr == nil {
			<-ctx.Done()
		}
	}
	log.Info("shutting down", zap.Duration("timeout", cfg.ShutdownTimeout.D()))
	stopAdmin()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
	defer cancel()
	// Both at once: deliveries in flight finish while the last injected
	// messages are being spooled (they stay pending and are recovered).
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); in.Shutdown(sctx) }()
	go func() { defer wg.Done(); sch.Stop(sctx) }()
	wg.Wait()
	if !recDone {
		recErr = <-recovered // the scan owns the spool until it ends
	}
	if recErr != nil {
		log.Info("stopped")
		return fmt.Errorf("spool recovery: %w: %w", recErr, errLogged)
	}
	log.Info("stopped")
	return nil
}
