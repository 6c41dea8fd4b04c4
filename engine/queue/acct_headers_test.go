package queue

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/bounce"
	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/dns"
	"github.com/sluice-mta/sluice/engine/dns/dnstest"
	"github.com/sluice-mta/sluice/engine/spool"
	"github.com/sluice-mta/sluice/engine/testenv"
	"github.com/sluice-mta/sluice/pools"
)

// This test uses 127.20.65.96-98 (the acct header-fields block): .97 a
// sink, .98 an MX where nothing listens.

// hdrRecorder is a recorder with header_* columns, as *acct.Writer.
type hdrRecorder struct {
	*recorder
	names []string
}

func (h hdrRecorder) HeaderFields() []string { return h.names }

// TestAcctHeaders: records carry the message's configured header values:
// from the body handed to EnqueueBody (r, then d), and for a message the
// scheduler took without its body (Recover after a restart) from the
// spool, when a queue-wide connection failure settles it unattempted (t).
func TestAcctHeaders(t *testing.T) {
	srv := dnstest.Start(t)
	res, err := dns.New(dns.Config{Servers: []string{srv.Addr()}, Timeout: time.Second}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	st, err := spool.Open(t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := &config.Config{Hostname: "mta.test", Domains: map[string]*config.Domain{"*": {}}}
	rec := &recorder{}
	sch := New(Options{Hostname: "mta.test", Pools: pools.New(cfg, pools.Options{Counters: st}), Domains: cfg.DomainForVMTA,
		Rules: cfg.Rules, Delivery: config.Delivery{Port: 25, ConnectTimeout: config.Duration(time.Second)}, Store: st, Resolver: res,
		Acct: hdrRecorder{rec, []string{"Subject", "X-Campaign"}}, Classifier: bounce.NewClassifier(nil),
		Log: zap.NewNop(), IdleTimeout: 100 * time.Millisecond})
	sch.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sch.Stop(ctx)
	}()
	testenv.StartSink(t, "127.20.65.97:25", testenv.SinkOptions{})
	srv.SetMX("up.test", dnstest.MX{Pref: 10, Host: "mx.up.test"})
	srv.SetA("mx.up.test", "127.20.65.97")
	srv.SetMX("down.test", dnstest.MX{Pref: 10, Host: "mx.down.test"})
	srv.SetA("mx.down.test", "127.20.65.98")

	put := func(rcpt, subject string) (*spool.Message, []byte) {
		m := &spool.Message{ID: st.NewID(), Env: spool.Envelope{From: "s@sender.test", Received: time.Now()}, Rcpts: []spool.Rcpt{{Addr: rcpt}}}
		body := []byte("Subject: " + subject + "\r\nx-campaign: c1\r\n\r\nbody\r\n")
		m.Env.Size = int64(len(body))
		if err := st.Put(context.Background(), m, body); err != nil {
			t.Fatal(err)
		}
		return m, body
	}
	m, body := put("a@up.test", "first")
	sch.EnqueueBody(m, body)
	m2, _ := put("b@down.test", "second")
	sch.Enqueue(m2) // as Recover does: no body at hand
	rec.wait(t, "d", 1)
	rec.wait(t, "t", 1)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.recs {
		want := map[string]string{"Subject": "first", "X-Campaign": "c1"}
		switch {
		case r.Rcpt == "b@down.test" && r.Type == "r":
			want = nil // no body at hand at receipt
		case r.Rcpt == "b@down.test":
			want["Subject"] = "second"
		}
		if len(r.Headers) != len(want) || r.Headers["Subject"] != want["Subject"] || r.Headers["X-Campaign"] != want["X-Campaign"] {
			t.Errorf("%s record for %s: Headers %q, want %q", r.Type, r.Rcpt, r.Headers, want)
		}
	}
}
