package ingest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/acct"
	"github.com/sluice-mta/sluice/fbl/guard"
	"github.com/sluice-mta/sluice/fbl/suppress"
	"github.com/sluice-mta/sluice/fbl/trace"
	"github.com/sluice-mta/sluice/fbl/unsub"
)

var keys = trace.Keys{Current: []byte("0123456789abcdef0123")}

// recorder is a recording Accounter and queue (our own seams).
type recorder struct {
	mu       sync.Mutex
	recs     []acct.Record
	held     map[string]string
	canceled []string
}

func (r *recorder) Write(rec *acct.Record) { r.mu.Lock(); r.recs = append(r.recs, *rec); r.mu.Unlock() }
func (r *recorder) HoldJob(job, reason string) {
	r.mu.Lock()
	r.held[job] = reason
	r.mu.Unlock()
}
func (r *recorder) HeldJobs() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]string{}
	for k, v := range r.held {
		m[k] = v
	}
	return m
}
func (r *recorder) CancelRecipient(addr, category, diag string) int {
	r.mu.Lock()
	r.canceled = append(r.canceled, addr+" "+category+" "+diag)
	r.mu.Unlock()
	return 1
}
func (r *recorder) records(typ string) []acct.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []acct.Record
	for _, x := range r.recs {
		if x.Type == typ {
			out = append(out, x)
		}
	}
	return out
}

func newService(t *testing.T, o Options) (*Service, *recorder, suppress.Store) {
	t.Helper()
	store, err := suppress.NewLocal(suppress.NewMemKV(), suppress.WithPurgeInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{held: map[string]string{}}
	o.Keys, o.UnsubKeys, o.Store, o.Acct = keys, keys, store, rec
	if o.FBLAddrs == nil {
		o.FBLAddrs = []string{"FBL@fbl.test"}
	}
	o.BounceAddrs = []string{"bounces@b.test"}
	o.MailtoDomain = "unsub.test"
	if o.SuppressTypes == nil {
		o.SuppressTypes = []string{"abuse", "fraud"}
	}
	o.HardCategories = []string{"bad-mailbox", "bad-domain", "inactive-mailbox"}
	o.SyncEvery = 10 * time.Millisecond
	o.DeliveryBounces = true
	s := New(o)
	s.SetQueue(rec, rec, rec)
	ctx, cancel := context.WithCancel(context.Background())
	done := s.Start(ctx)
	t.Cleanup(func() { cancel(); <-done; store.Close() })
	return s, rec, store
}

func TestClaims(t *testing.T) {
	s, _, _ := newService(t, Options{})
	for _, c := range []struct {
		rcpt string
		want Kind
	}{
		{"fbl@fbl.test", KindFBL}, {"<FBL@FBL.test>", KindFBL}, {"fbl+x@fbl.test", KindNone},
		{"bounces@b.test", KindBounce}, {"bounces+abc.1@b.test", KindBounce}, {"Bounces+X@B.TEST", KindBounce},
		{"bounces@other.test", KindNone}, {"unsub+tok@unsub.test", KindUnsub}, {"unsub@unsub.test", KindNone},
		{"someone@rcpt.test", KindNone}, {"nobody", KindNone},
	} {
		if got := s.Claims(c.rcpt); got != c.want {
			t.Errorf("Claims(%q) = %q, want %q", c.rcpt, got, c.want)
		}
	}
}

func arfMsg(feedbackType, original string) []byte {
	return []byte("From: isp@isp.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=B\r\n\r\n" +
		"--B\r\nContent-Type: text/plain\r\n\r\nreport\r\n--B\r\nContent-Type: message/feedback-report\r\n\r\n" +
		"Feedback-Type: " + feedbackType + "\r\nUser-Agent: T/1\r\nVersion: 1\r\nSource-IP: 192.0.2.1\r\nReported-Domain: s.test\r\n\r\n" +
		"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n" + original + "\r\n--B--\r\n")
}

func traced(rcpt, job string) string {
	return "X-Sluice-Ref: " + trace.Encode(trace.Ref{Rcpt: rcpt, JobID: job, VMTA: "v1", Source: "10.0.0.1", MsgID: "M1"}, keys) +
		"\r\nSubject: hi\r\nTo: <redacted@x.test>\r\n"
}

func TestComplaint(t *testing.T) {
	s, rec, store := newService(t, Options{})
	ctx := context.Background()
	res, err := s.Ingest(ctx, KindFBL, arfMsg("abuse", traced("a@x.test", "j1")))
	if err != nil || res.Outcome != OutcomeSuppressed || res.JobID != "j1" {
		t.Fatalf("Ingest = %+v, %v", res, err)
	}
	if ok, _ := s.Suppressed(ctx, "A@x.test", ""); !ok {
		t.Error("not suppressed")
	}
	f := rec.records("f")
	if len(f) != 1 || f[0].Rcpt != "a@x.test" || f[0].FeedbackType != "abuse" || f[0].RepSourceIP != "192.0.2.1" || f[0].VMTA != "v1" {
		t.Errorf("f records: %+v", f)
	}
	// not-spam is accounted, never suppresses.
	if res, err := s.Ingest(ctx, KindFBL, arfMsg("not-spam", traced("b@x.test", "j1"))); err != nil || res.Outcome != OutcomeRecorded {
		t.Errorf("not-spam: %+v, %v", res, err)
	}
	// A tampered trace header: nothing happens.
	v := traced("c@x.test", "j1")
	v = strings.Replace(v, "X-Sluice-Ref: A", "X-Sluice-Ref: B", 1)
	v = strings.Replace(v, "X-Sluice-Ref: ", "X-Sluice-Ref: A", 1)
	if _, err := s.Ingest(ctx, KindFBL, arfMsg("abuse", v)); !errors.Is(err, ErrForged) {
		t.Errorf("forged: %v", err)
	}
	if _, ok, _ := store.IsSuppressed(ctx, "", "c@x.test"); ok || len(rec.records("f")) != 2 {
		t.Errorf("a forged report had an effect")
	}
	if _, err := s.Ingest(ctx, KindFBL, []byte("Subject: hello\r\n\r\nhi\r\n")); !errors.Is(err, ErrNotReport) {
		t.Errorf("not a report: %v", err)
	}
	if _, err := s.Ingest(ctx, KindFBL, make([]byte, MaxSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
}

func TestGuardHoldsAndResets(t *testing.T) {
	s, rec, _ := newService(t, Options{Guard: guard.Options{MaxRate: 0.1, MinVolume: 5, Window: time.Hour}})
	for range 5 {
		s.Observe(&acct.Record{Type: acct.TypeDelivered, JobID: "j1", VMTA: "v1"})
	}
	s.Ingest(context.Background(), KindFBL, arfMsg("abuse", traced("a@x.test", "j1")))
	waitFor(t, func() bool { return rec.HeldJobs()["j1"] != "" }, "job held")
	if !s.Guard().Paused("j1") {
		t.Fatal("guard not paused")
	}
	rec.mu.Lock()
	delete(rec.held, "j1") // the operator resumes
	rec.mu.Unlock()
	waitFor(t, func() bool { return !s.Guard().Paused("j1") }, "guard reset after release")
}

func TestBouncesAndCancel(t *testing.T) {
	s, rec, _ := newService(t, Options{SoftLimit: 2, SoftWindow: time.Hour})
	ctx := context.Background()
	dsn := func(rcpt, status string) []byte {
		return []byte("From: MAILER-DAEMON@r.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=D\r\n\r\n" +
			"--D\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; r.test\r\n\r\n" +
			"Final-Recipient: rfc822; " + rcpt + "\r\nAction: " + map[bool]string{true: "failed", false: "delayed"}[status[0] == '5'] +
			"\r\nStatus: " + status + "\r\nDiagnostic-Code: smtp; " + status[:1] + "50 " + status + " mailbox problem\r\n\r\n--D--\r\n")
	}
	res, err := s.Ingest(ctx, KindBounce, dsn("hard@x.test", "5.1.1"))
	if err != nil || res.Outcome != OutcomeSuppressed {
		t.Fatalf("hard bounce: %+v, %v", res, err)
	}
	if rb := rec.records("rb"); len(rb) != 1 || rb[0].BounceCat != "bad-mailbox" {
		t.Errorf("rb records: %+v", rb)
	}
	for i := range 2 {
		res, _ = s.Ingest(ctx, KindBounce, dsn("soft@x.test", "4.2.2"))
		if want := map[int]string{0: OutcomeRecorded, 1: OutcomeSuppressed}[i]; res.Outcome != want {
			t.Errorf("soft bounce %d: %+v, want %s", i+1, res, want)
		}
	}
	waitFor(t, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.canceled) == 2
	}, "queued mail cancelled for both")
	if c := rec.canceled[0]; c != "hard@x.test policy-related suppressed: hard-bounce" {
		t.Errorf("cancel = %q", c)
	}
	// A hard bounce at delivery suppresses through Observe.
	s.Observe(&acct.Record{Type: acct.TypeBounced, Rcpt: "sync@x.test", BounceCat: "bad-domain"})
	waitFor(t, func() bool { ok, _ := s.Suppressed(ctx, "sync@x.test", ""); return ok }, "delivery hard bounce suppressed")
	s.Observe(&acct.Record{Type: acct.TypeBounced, Rcpt: "pol@x.test", BounceCat: "policy-related"})
}

func TestUnsubscribe(t *testing.T) {
	s, rec, store := newService(t, Options{})
	ctx := context.Background()
	tok := unsub.MakeToken("u@x.test", "acme", "news", keys.Current)
	if _, err := s.Take(ctx, KindUnsub, []string{unsub.LocalPrefix + tok + "@unsub.test"}, []byte("Subject: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if e, ok, _ := store.IsSuppressed(ctx, "acme", "u@x.test"); !ok || e.Reason != suppress.Unsubscribe {
		t.Errorf("not suppressed in scope acme: %+v", e)
	}
	if _, ok, _ := store.IsSuppressed(ctx, "", "u@x.test"); ok {
		t.Error("a tenant's unsubscribe suppressed globally")
	}
	if f := rec.records("f"); len(f) != 1 || f[0].FeedbackType != "opt-out" || f[0].UserAgent != "mailto" || f[0].JobID != "news" {
		t.Errorf("opt-out record: %+v", f)
	}
	if _, err := s.Take(ctx, KindUnsub, []string{"unsub+AAAA" + tok[4:] + "@unsub.test"}, nil); !errors.Is(err, ErrForged) {
		t.Errorf("forged token: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal(fmt.Sprintf("timed out waiting for: %s", what))
}
