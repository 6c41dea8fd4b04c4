package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/acct"
	"github.com/sluice-mta/sluice/engine/admin"
	"github.com/sluice-mta/sluice/engine/bounce"
	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/listener"
	"github.com/sluice-mta/sluice/engine/queue"
	"github.com/sluice-mta/sluice/engine/reply"
	"github.com/sluice-mta/sluice/engine/spool"
	"github.com/sluice-mta/sluice/engine/submit"
	"github.com/sluice-mta/sluice/fbl/api"
	"github.com/sluice-mta/sluice/fbl/guard"
	"github.com/sluice-mta/sluice/fbl/ingest"
	"github.com/sluice-mta/sluice/fbl/stamp"
	"github.com/sluice-mta/sluice/fbl/suppress"
	"github.com/sluice-mta/sluice/fbl/trace"
	"github.com/sluice-mta/sluice/fbl/unsub"
)

// suppressPrefix names the suppression list's keys in a shared Redis.
const suppressPrefix = "sluice:suppress"

// fblParts is the feedback-loop side of the daemon, as serve wires it:
// the suppression store, the report service, the header stamper and the
// unsubscribe listener.
type fblParts struct {
	Store      suppress.Store
	Service    *ingest.Service
	Transforms []submit.Transform             // spool time, before DKIM
	Decorate   func(queue.Transaction) []byte // delivery time; nil without a secret
	Gate       listener.Gate

	aw      *acct.Writer
	rc      redis.UniversalClient
	unsub   *http.Server
	cancel  context.CancelFunc
	svcDone <-chan struct{} // closed when the service goroutine has stopped
	wg      sync.WaitGroup  // the unsubscribe listener
}

// startFBL builds the suppression list (in the spool database, or in Redis
// when [redis] is set), the report service and its goroutine, the
// unsubscribe listener, and mounts the API routes on adm (when not nil).
// Secrets are never logged.
func startFBL(cfg *config.Config, sp *spool.Store, aw *acct.Writer, cl *bounce.Classifier, adm *admin.Server, log *zap.Logger) (*fblParts, error) {
	f := &fblParts{aw: aw}
	var err error
	if cfg.Redis.Enabled() {
		f.rc, err = newRedisClient(cfg.Redis)
		if err != nil {
			return nil, err
		}
		f.Store, err = suppress.NewRedis(f.rc, suppressPrefix, log.Named("suppress"))
	} else {
		f.Store, err = suppress.NewLocal(sp.KV(), suppress.WithLogger(log.Named("suppress")))
	}
	if err != nil {
		f.closeClient()
		return nil, fmt.Errorf("suppression list: %w", err)
	}
	keys := trace.Keys{Current: cfg.FBL.SecretValue, Old: cfg.FBL.OldSecretValues}
	ukeys := trace.Keys{Current: cfg.Unsubscribe.SecretValue}
	if cfg.Unsubscribe.Secret == "" {
		ukeys = keys // the [fbl] secret and its old ones
	}
	f.Service = ingest.New(ingest.Options{
		Keys: keys, TraceHeader: cfg.FBL.Header, UnsubKeys: ukeys,
		FBLAddrs: cfg.FBL.Addresses, BounceAddrs: cfg.Bounce.Addresses, MailtoDomain: cfg.Unsubscribe.MailtoDomain,
		SuppressTypes: cfg.FBL.Suppress, HardCategories: cfg.Bounce.SuppressCategories, DeliveryBounces: cfg.Bounce.Enabled(),
		SoftLimit: cfg.Bounce.SoftBounceLimit, SoftWindow: cfg.Bounce.SoftBounceWindow.D(),
		Guard: guard.Options{Window: cfg.FBL.Window.D(), MaxRate: cfg.FBL.MaxRate, MinVolume: cfg.FBL.MinVolume},
		Store: f.Store, Acct: aw, Classifier: cl, Log: log,
	})
	aw.Observe(f.Service.Observe)
	so := stamp.Options{Keys: keys, TraceHeader: cfg.FBL.Header, FeedbackID: cfg.FBL.FeedbackID,
		BaseURL: cfg.Unsubscribe.BaseURL, MailtoDomain: cfg.Unsubscribe.MailtoDomain}
	if cfg.Unsubscribe.Enabled() {
		so.UnsubKey = ukeys.Current
	}
	st := stamp.New(so)
	if cfg.FBL.Enabled() || cfg.FBL.FeedbackID != "" || cfg.Unsubscribe.Enabled() {
		f.Transforms = []submit.Transform{submit.TransformFunc(st.Transform)}
	}
	if cfg.FBL.Enabled() {
		f.Decorate = st.Decorate
	}
	f.Gate = gate{f.Service, aw}

	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.svcDone = f.Service.Start(ctx)

	if adm != nil {
		api.Mount(adm, f.Service, f.Store)
	}
	if u := cfg.Unsubscribe; u.Listen != "" {
		ln, err := net.Listen("tcp", u.Listen)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("unsubscribe listen %s: %w", u.Listen, err)
		}
		h := unsub.Handler(ukeys, func(ctx context.Context, rcpt, scope, job string) error {
			return f.Service.Unsubscribe(ctx, rcpt, scope, job, "one-click")
		}, unsub.WithLogger(log.Named("unsubscribe")))
		f.unsub = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			if err := f.unsub.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("unsubscribe listener stopped", zap.Error(err))
			}
		}()
		log.Info("unsubscribe listening", zap.String("addr", ln.Addr().String()))
	}
	return f, nil
}

// SetQueue gives the report service the scheduler's hold and cancel
// methods, when the scheduler has them.
func (f *fblParts) SetQueue(sch any) {
	h, _ := sch.(ingest.JobHolder)
	c, _ := sch.(ingest.Canceller)
	l, _ := sch.(ingest.HeldLister)
	f.Service.SetQueue(h, c, l)
}

// Close stops the unsubscribe listener, the service and the store.
func (f *fblParts) Close() {
	if f.unsub != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		f.unsub.Shutdown(ctx)
		cancel()
	}
	if f.cancel != nil {
		f.cancel()
		<-f.svcDone
	}
	f.wg.Wait()
	if f.Store != nil {
		f.Store.Close()
	}
	f.closeClient()
}

func (f *fblParts) closeClient() {
	if f.rc != nil {
		f.rc.Close()
	}
}

// newRedisClient is the suppression list's own client, with the
// throttle's short timeouts.
func newRedisClient(c config.Redis) (redis.UniversalClient, error) {
	if c.URL != "" {
		opt, err := redis.ParseURL(c.URL)
		if err != nil {
			return nil, fmt.Errorf("redis.url: %w", err)
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = time.Second, time.Second, time.Second
		return redis.NewClient(opt), nil
	}
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Nodes,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second}), nil
}

// gate adapts the report service to the listener: kinds as strings, and
// ingest errors as SMTP replies.
type gate struct {
	s  *ingest.Service
	aw *acct.Writer
}

func (g gate) Claims(rcpt string) string { return string(g.s.Claims(rcpt)) }

func (g gate) Suppressed(ctx context.Context, rcpt, scope string) (bool, error) {
	return g.s.Suppressed(ctx, rcpt, scope)
}

// Dropped writes the b record of a suppressed recipient accepted and
// dropped at RCPT.
func (g gate) Dropped(from, rcpt, scope, sourceIP string) {
	g.aw.Write(&acct.Record{Type: acct.TypeBounced, Orig: from, Rcpt: rcpt, RcvSourceIP: sourceIP,
		DSNAction: "failed", DSNStatus: "5.7.1 (recipient suppressed)", DSNDiag: "smtp;550 5.7.1 recipient suppressed (accepted and dropped)",
		BounceCat: "policy-related", SrcType: "suppressed"})
}

// Take maps the outcome of a report to the SMTP reply: a forged report is
// accepted and ignored (the sender learns nothing), junk and oversized
// mail is refused, and a store failure asks the sender to retry.
func (g gate) Take(ctx context.Context, kind string, rcpts []string, msg []byte) error {
	_, err := g.s.Take(ctx, ingest.Kind(kind), rcpts, msg)
	switch {
	case err == nil, errors.Is(err, ingest.ErrForged):
		return nil
	case errors.Is(err, ingest.ErrTooLarge):
		return reply.New(552, reply.Status{5, 3, 4}, "report larger than 10 MiB")
	case errors.Is(err, ingest.ErrNotReport):
		return reply.New(550, reply.Status{5, 6, 0}, "not a report this address takes")
	}
	return reply.Wrap(451, reply.Status{4, 3, 0}, "local error, try again later", err)
}
