package queue

import (
	"context"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/acct"
	"github.com/sluice-mta/sluice/engine/bounce"
	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/delivery"
	"github.com/sluice-mta/sluice/engine/reply"
	"github.com/sluice-mta/sluice/engine/spool"
	"github.com/sluice-mta/sluice/pools"
)

// deliver sends one item over conn and settles its recipients. It reports
// whether the connection can carry another transaction.
func (s *Scheduler) deliver(ctx context.Context, conn *delivery.Conn, it *item, info *connInfo) bool {
	if n := it.q.settings.MaxRcptPerMessage; n > 0 && len(it.idx) > n {
		// max-rcpt-per-message: this transaction takes the first n, the
		// rest queue again as their own item.
		rest := &item{msg: it.msg, domain: it.domain, idx: it.idx[n:], q: it.q, pool: it.pool}
		it.idx = it.idx[:n:n]
		s.makeReady(rest)
	}
	msg := it.msg
	body, err := s.opts.Store.Body(msg.id)
	if err != nil {
		s.log.Error("spool body unreadable", zap.String("msg_id", msg.id), zap.Error(err))
		s.settle(it, sameReply(len(it.idx), reply.Wrap(451, reply.Status{4, 3, 0}, "local error reading message", err)), nil, nil)
		return true
	}
	s.acctHeaders(msg, body) // from the spool's copy, before decoration
	env := delivery.Envelope{
		From:     msg.env.From,
		Size:     int64(len(body)),
		EnvID:    msg.env.EnvID,
		Ret:      msg.env.Ret,
		Body8Bit: msg.env.Body8Bit,
		SMTPUTF8: msg.env.SMTPUTF8,
	}
	msg.mu.Lock()
	for _, i := range it.idx {
		r := msg.rcpts[i]
		env.Rcpts = append(env.Rcpts, delivery.Rcpt{Addr: r.Addr, Notify: r.Notify, ORcpt: r.ORcpt})
	}
	msg.mu.Unlock()
	if s.opts.Decorate != nil {
		rcpts := make([]string, len(env.Rcpts))
		for k, r := range env.Rcpts {
			rcpts[k] = r.Addr
		}
		out := s.decorate(Transaction{MsgID: msg.id, Env: &msg.env, Rcpts: rcpts, VMTA: it.q.vmta.Name}, body)
		env.Size = int64(len(out))
		body = out
	}
	env.RequireTLS = msg.env.RequireTLS // RFC 8689
	// A domain sharing this connection may need more TLS than its routing
	// domain did; a REQUIRETLS message needs an authenticated MX (tls.go).
	if r := s.tlsRefusal(ctx, conn, it, info.domain); r != nil {
		s.settle(it, sameReply(len(it.idx), r), info, nil)
		return true
	}
	results, err := conn.Send(ctx, env, body)
	if len(results) != len(it.idx) { // defensive: never lose a recipient
		results = sameReply(len(it.idx), reply.Wrap(451, reply.Status{4, 4, 2}, "connection lost", err))
	}
	s.settle(it, results, info, body)
	return err == nil
}

func sameReply(n int, r *reply.Error) []*reply.Error {
	rs := make([]*reply.Error, n)
	for i := range rs {
		rs[i] = r
	}
	return rs
}

// failDomain settles the ready items of q for one domain with r, and
// points the queue at another domain of its site for routing.
func (s *Scheduler) failDomain(q *queue, domain string, r *reply.Error) {
	q.mu.Lock()
	var mine, rest []*item
	for _, it := range q.ready {
		if it.domain == domain {
			mine = append(mine, it)
		} else {
			rest = append(rest, it)
		}
	}
	q.ready = rest
	if len(rest) > 0 {
		q.domain = rest[0].domain
	}
	q.mu.Unlock()
	s.log.Info("site routing domain failed", zap.String("queue", q.name), zap.String("domain", domain), zap.Object("reply", r))
	for _, it := range mine {
		s.settle(it, sameReply(len(it.idx), r), nil, nil)
	}
}

// failQueue settles every ready item of q with r: a DNS or connection
// failure concerns the whole queue.
//
// A temporary failure also holds the queue (PowerMTA's retry mode): mail
// that arrives before the first retry-after step has passed waits for it
// instead of opening yet another connection to a host that just failed.
func (s *Scheduler) failQueue(q *queue, r *reply.Error, info *connInfo) {
	q.mu.Lock()
	items := q.ready
	q.ready = nil
	if !r.Permanent() {
		q.holdUntil = s.opts.Now().Add(retryDelay(q.settings.RetryAfter, 1))
	}
	q.probing = false
	q.mu.Unlock()
	s.log.Info("queue attempt failed", zap.String("queue", q.name), zap.Object("reply", r), zap.Int("items", len(items)))
	for _, it := range items {
		s.settle(it, sameReply(len(it.idx), r), info, nil)
	}
}

// settle records the outcome of one attempt for each recipient of it:
// 2xx delivered, 5xx bounced, anything else deferred until bounce-after,
// then bounced as message-expired. The spool learns the new states before
// the deferred part is re-armed.
func (s *Scheduler) settle(it *item, results []*reply.Error, info *connInfo, body []byte) {
	msg := it.msg
	now := s.opts.Now()
	set := it.q.settings
	expireAt := msg.env.Received.Add(set.BounceAfter.D())
	hdrs := s.acctHeaders(msg, body) // before Update may delete the body

	rules := s.opts.Rules(set.SMTPPatternList)
	var deferred []int
	var failed []failure
	disabled, backedOff, delivered := false, false, false
	newStates := make([]spool.Rcpt, len(it.idx))
	recs := make([]*acct.Record, 0, len(it.idx))
	next := time.Time{}

	msg.mu.Lock()
	for k, i := range it.idx {
		r := results[k]
		rc := &msg.rcpts[i]
		rc.Attempts++
		if rc.FirstAttempt.IsZero() {
			rc.FirstAttempt = now
		}
		rc.LastReply = r.Error()
		rec := s.record(it, rc, r, info, now)
		rule := matchRule(rules, r)
		if r.Code/100 != 2 && !now.Before(expireAt) && (rule == nil || rule.Action != "bounce") {
			rule = nil // expired: no rule may keep it waiting; it bounces below
		}
		if rule != nil && rule.Mode == "backoff" && !backedOff {
			s.setBackoff(it.q, "reply matched "+rule.Reply.String()+": "+oneLine(r.Error()))
			backedOff = true
		}
		switch {
		case rule != nil && rule.Action == "disable-source-ip":
			// Not the message's fault: take this IP out of rotation for the
			// site and send the recipient again at once from another.
			if !disabled {
				s.disableSourceIP(it.q, now.Add(rule.ReenableAfter.D()), "reply matched "+rule.Reply.String()+": "+oneLine(r.Error()))
				disabled = true
			}
			rec.Type, rec.DSNAction = "t", "delayed"
			rc.NextAttempt = now
			deferred = append(deferred, i)
		case rule != nil && rule.Action == "bounce" && r.Code/100 != 2:
			rc.State = spool.Bounced
			rec.Type, rec.DSNAction = "b", "failed"
			failed = append(failed, failure{rcpt: *rc, reply: r, mta: rec.DSNMta})
		case rule != nil && rule.Action == "retry-soon" && !r.Permanent() && now.Before(expireAt):
			rec.Type, rec.DSNAction = "t", "delayed"
			soon := now.Add(rule.RetryAfter.D())
			if next.IsZero() || soon.Before(next) {
				next = soon
			}
			rc.NextAttempt = next
			deferred = append(deferred, i)
		case r.Code/100 == 2:
			delivered = true
			rc.State = spool.Delivered
			rec.Type, rec.DSNAction = "d", "relayed"
		case r.Permanent():
			rc.State = spool.Bounced
			rec.Type, rec.DSNAction = "b", "failed"
			failed = append(failed, failure{rcpt: *rc, reply: r, mta: rec.DSNMta})
		case !now.Before(expireAt):
			rc.State = spool.Bounced
			rec.Type, rec.DSNAction = "b", "failed"
			rec.BounceCat = bounce.MessageExpired
			rec.DSNStatus = statusText("5.4.7")
			rec.DSNDiag = "smtp;" + r.Error()
			failed = append(failed, failure{rcpt: *rc, reply: reply.New(550, reply.Status{5, 4, 7}, "message expired after "+set.BounceAfter.String()+"; last error: "+r.Error()), mta: rec.DSNMta})
		default:
			rec.Type, rec.DSNAction = "t", "delayed"
			if next.IsZero() {
				_, _, retry := s.limits(it.q)
				next = now.Add(retryDelay(retry, rc.Attempts))
				if next.After(expireAt) {
					next = expireAt // one last attempt at expiry
				}
			}
			rc.NextAttempt = next
			deferred = append(deferred, i)
		}
		newStates[k] = *rc
		recs = append(recs, rec)
	}
	msg.mu.Unlock()

	if delivered {
		s.deliveredInBackoff(it.q)
	}
	wantDSN := len(failed) > 0 && msg.env.BounceDSN && msg.env.From != ""
	if wantDSN && body == nil {
		body, _ = s.opts.Store.Body(msg.id) // before Update may delete it
	}
	if err := s.opts.Store.Update(msg.id, it.idx, newStates); err != nil {
		// The states stay pending on disk: at worst a duplicate after a restart.
		s.log.Error("spool update failed", zap.String("msg_id", msg.id), zap.Error(err))
	}
	for _, rec := range recs {
		rec.Headers = hdrs
		s.opts.Acct.Write(rec)
	}
	if wantDSN {
		s.sendDSN(msg, failed, body, now)
	}
	if len(deferred) > 0 {
		again := &item{msg: msg, domain: it.domain, idx: deferred, q: it.q, pool: it.pool, next: next}
		if disabled {
			again.next = now
			s.makeReady(again) // picks another VMTA of the pool
			s.reroute(it.q)
		} else {
			s.retryLater(again) // the timers, unless cancelled meanwhile (tomb.go)
		}
	}
}

// matchRule returns the first pattern-list rule whose regexp matches the
// reply as "code status text", or nil.
func matchRule(rules []config.PatternRule, r *reply.Error) *config.PatternRule {
	if len(rules) == 0 || r.Code/100 == 2 {
		return nil
	}
	text := r.Error()
	for i := range rules {
		if rules[i].Reply.Regexp != nil && rules[i].Reply.MatchString(text) {
			return &rules[i]
		}
	}
	return nil
}

// retryDelay follows retry-after: the n-th failure waits the n-th value,
// and the last value repeats.
func retryDelay(list []config.Duration, attempts int) time.Duration {
	if len(list) == 0 {
		return 10 * time.Minute
	}
	i := attempts - 1
	if i >= len(list) {
		i = len(list) - 1
	}
	if i < 0 {
		i = 0
	}
	return list[i].D()
}

// record fills the fields common to d, b and t records.
func (s *Scheduler) record(it *item, rc *spool.Rcpt, r *reply.Error, info *connInfo, now time.Time) *acct.Record {
	msg := it.msg
	st := r.Status
	if st.IsZero() {
		st = reply.Status{r.Code / 100, 0, 0}
	}
	rec := &acct.Record{
		TimeLogged:       now,
		TimeQueued:       msg.env.Received,
		TimeFirstAttempt: rc.FirstAttempt,
		Orig:             msg.env.From,
		Rcpt:             rc.Addr,
		ORcpt:            rc.ORcpt,
		DSNStatus:        statusText(st.String()),
		DSNDiag:          "smtp;" + oneLine(r.Error()),
		SrcType:          "smtp",
		SrcMta:           msg.env.SourceIP,
		DlvType:          "smtp",
		DlvSize:          msg.env.Size,
		VMTA:             it.q.vmta.Name,
		VMTAPool:         it.pool,
		JobID:            msg.env.JobID,
		EnvID:            msg.env.EnvID,
		Queue:            it.q.name,
	}
	if r.Code/100 != 2 {
		rec.BounceCat = s.opts.Classifier.Classify(r.Code, r.Status.String(), r.Text)
	}
	if info != nil {
		rec.DSNMta = info.mta
		rec.DlvSourceIP = info.srcIP
		rec.DlvDestinationIP = info.dstIP
		rec.DlvEsmtpAvailable = info.esmtp
		rec.DlvTLSProtocol = info.tlsProto
		rec.DlvTLSCipher = info.tlsCipher
	}
	return rec
}

// accountReceipt writes the "r" record of one recipient.
func (s *Scheduler) accountReceipt(msg *message, i int) {
	rc := msg.rcpts[i]
	requested := msg.env.VMTA // the VMTA or pool asked for; the pick comes later
	if requested == "" {
		requested = pools.DefaultName
	}
	s.opts.Acct.Write(&acct.Record{
		Type:        "r",
		TimeLogged:  msg.env.Received,
		TimeQueued:  msg.env.Received,
		Orig:        msg.env.From,
		Rcpt:        rc.Addr,
		ORcpt:       rc.ORcpt,
		SrcType:     "smtp",
		SrcMta:      msg.env.SourceIP,
		RcvSourceIP: msg.env.SourceIP,
		DlvSize:     msg.env.Size,
		VMTA:        requested,
		JobID:       msg.env.JobID,
		EnvID:       msg.env.EnvID,
		Queue:       domainOf(rc.Addr) + "/" + requested,
		Headers:     msg.hdrs, // known when the body came with the message (EnqueueBody)
	})
}

// statusText renders a status as PowerMTA does: "5.1.1 (bad destination
// mailbox address)", with RFC 3463's wording where we know it.
func statusText(st string) string {
	if d, ok := statusWords[st]; ok {
		return st + " (" + d + ")"
	}
	switch {
	case strings.HasPrefix(st, "2."):
		return st + " (success)"
	case strings.HasPrefix(st, "4."):
		return st + " (transient failure)"
	case strings.HasPrefix(st, "5."):
		return st + " (permanent failure)"
	}
	return st
}

// statusWords are RFC 3463 §3 descriptions of common codes.
var statusWords = map[string]string{
	"2.0.0":  "success",
	"5.1.1":  "bad destination mailbox address",
	"5.1.2":  "bad destination system address",
	"5.1.10": "recipient address has null MX",
	"4.2.2":  "mailbox full", "5.2.2": "mailbox full",
	"4.3.0": "other or undefined mail system status",
	"4.4.1": "no answer from host",
	"4.4.2": "bad connection",
	"4.4.3": "directory server failure",
	"4.4.7": "delivery time expired", "5.4.7": "delivery time expired",
	"5.7.1": "delivery not authorized, message refused",
}

func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// failure is a bounced recipient, for the DSN.
type failure struct {
	rcpt  spool.Rcpt
	reply *reply.Error
	mta   string
}

// sendDSN queues an RFC 3464 failure report to the envelope sender, never
// to the null sender (RFC 5321 §4.5.5), honouring NOTIFY (RFC 3461 §4.1).
func (s *Scheduler) sendDSN(msg *message, failed []failure, body []byte, now time.Time) {
	d := &bounce.DSN{
		ReportingMTA: s.opts.Hostname,
		EnvID:        msg.env.EnvID,
		ArrivalDate:  msg.env.Received,
		From:         "MAILER-DAEMON@" + s.opts.Hostname,
		To:           msg.env.From,
		Original:     body,
		Ret:          msg.env.Ret,
		Now:          now,
	}
	for _, f := range failed {
		n := strings.ToUpper(f.rcpt.Notify)
		if n != "" && !strings.Contains(n, "FAILURE") {
			continue
		}
		mta := f.mta
		if i := strings.IndexByte(mta, ' '); i > 0 {
			mta = mta[:i]
		}
		st := f.reply.Status
		if st.IsZero() {
			st = reply.Status{5, 0, 0}
		}
		d.Recipients = append(d.Recipients, bounce.DSNRecipient{
			Final: f.rcpt.Addr, Original: f.rcpt.ORcpt, Action: "failed", Status: st.String(),
			RemoteMTA: mta, Diagnostic: "smtp; " + oneLine(f.reply.Error()), LastAttempt: now,
		})
	}
	if len(d.Recipients) == 0 {
		return
	}
	id := s.opts.Store.NewID()
	d.MessageID = "<" + id + "@" + s.opts.Hostname + ">"
	raw, err := d.Bytes()
	if err != nil {
		s.log.Error("dsn build failed", zap.String("msg_id", msg.id), zap.Error(err))
		return
	}
	if s.opts.SignDSN != nil {
		if signed, err := s.opts.SignDSN(raw); err == nil {
			raw = signed
		} else {
			s.log.Warn("dsn not signed", zap.String("msg_id", msg.id), zap.Error(err))
		}
	}
	m := &spool.Message{ID: id, Env: spool.Envelope{Received: now, Size: int64(len(raw)), SourceIP: "127.0.0.1"},
		Rcpts: []spool.Rcpt{{Addr: msg.env.From, Notify: "NEVER"}}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.opts.Store.Put(ctx, m, raw); err != nil {
		s.log.Error("dsn spool failed", zap.String("msg_id", msg.id), zap.Error(err))
		return
	}
	s.EnqueueBody(m, raw)
}
