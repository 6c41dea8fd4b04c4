package delivery

import (
	"context"

	"github.com/sluice-mta/sluice/engine/reply"
)

// Rcpt is one recipient of a transaction.
type Rcpt struct {
	Addr   string // forward-path without angle brackets
	Notify string // RFC 3461 §4.1, e.g. "FAILURE,DELAY" or "NEVER"; "" = none; invalid values are dropped
	ORcpt  string // RFC 3461 §4.2 original recipient, decoded, e.g. "rfc822;a@b.test" or "a@b.test"; Send encodes it
}

// Envelope is one message's SMTP envelope.
type Envelope struct {
	From     string // reverse-path without angle brackets; "" is the null sender
	Rcpts    []Rcpt
	Size     int64  // for SIZE=; 0 → len(body)
	EnvID    string // RFC 3461 §4.4; dropped unless printable ASCII of at most 100 characters
	Ret      string // RFC 3461 §4.3: "FULL" or "HDRS"
	Body8Bit bool   // the body has 8-bit content: needs 8BITMIME
	SMTPUTF8 bool   // the message was received with SMTPUTF8
	// RequireTLS is RFC 8689 REQUIRETLS: Send refuses the message unless the
	// session is TLS with a verified certificate and the host offers
	// REQUIRETLS, and then passes the parameter on.
	RequireTLS bool
}

// Send runs one mail transaction and returns one reply per recipient, always
// all filled in: a 2xx means accepted. A refused RCPT gets its own reply; an
// accepted one gets the reply to the final "." (or to DATA, if DATA was
// refused). When the connection breaks or times out, every recipient not yet
// finally answered gets 451 4.4.2 and err is non-nil: the Conn is then
// unusable and must be closed. A nil err means the Conn can carry another
// transaction (Send issues RSET itself after an aborted one).
//
// With PIPELINING, MAIL, every RCPT and DATA go out in one write (RFC 2920
// §3.1); without it, in lock-step. body is the message as stored, with CRLF
// line endings; Send dot-stuffs it and terminates it.
func (c *Conn) Send(ctx context.Context, env Envelope, body []byte) (results []*reply.Error, err error) {
	t := &txn{c: c, res: make([]*reply.Error, len(env.Rcpts))}
	for i := range env.Rcpts {
		t.idx = append(t.idx, i)
	}
	if c.broken != nil {
		r := reply.Wrap(451, reply.Status{4, 4, 2}, "connection lost", c.broken)
		t.fill(r)
		return t.res, r
	}
	if len(env.Rcpts) == 0 {
		return t.res, nil
	}
	needUTF8 := !isASCII(env.From) || (env.SMTPUTF8 && headerIs8Bit(body))
	for _, r := range env.Rcpts {
		needUTF8 = needUTF8 || !isASCII(r.Addr)
	}
	size := env.Size
	if size <= 0 {
		size = int64(len(body))
	}
	if r := c.refuse(env, size, needUTF8); r != nil {
		t.fill(r)
		return t.res, nil
	}
	utf8 := c.Has("SMTPUTF8") && (env.SMTPUTF8 || needUTF8)

	cmds := []string{c.mailCommand(env, size, utf8)}
	t.idx = t.idx[:0]
	for i, r := range env.Rcpts {
		if !validPath(r.Addr) {
			t.res[i] = reply.New(553, reply.Status{5, 1, 3}, "bad recipient address syntax")
			continue
		}
		t.idx = append(t.idx, i)
		cmds = append(cmds, c.rcptCommand(r, utf8))
	}
	if len(t.idx) == 0 {
		return t.res, nil
	}
	cmds = append(cmds, "DATA")

	stop := c.watch(ctx)
	defer stop()
	return t.res, t.run(ctx, cmds, body)
}

// refuse returns the reply for every recipient when the message cannot be
// sent to this server at all, or nil.
func (c *Conn) refuse(env Envelope, size int64, needUTF8 bool) *reply.Error {
	if env.RequireTLS {
		if r := c.requireTLSRefusal(); r != nil {
			return r
		}
	}
	switch {
	case !validPath(env.From):
		return reply.New(553, reply.Status{5, 1, 7}, "bad sender address syntax")
	case env.Body8Bit && !c.Has("8BITMIME"):
		// RFC 6152 §3: no 8-bit data to a server without 8BITMIME; we do
		// not downgrade.
		return reply.New(554, reply.Status{5, 6, 3}, "8-bit message but remote host lacks 8BITMIME")
	case needUTF8 && !c.Has("SMTPUTF8"):
		// RFC 6531 §3.4: an SMTPUTF8 message must not go to a server without
		// it. Like Postfix, a message flagged SMTPUTF8 whose envelope and
		// header are ASCII is not one.
		return reply.New(553, reply.Status{5, 6, 7}, "message needs SMTPUTF8 but remote host lacks it")
	case c.MaxSize() > 0 && size > c.MaxSize():
		// RFC 1870 §6: do not send what exceeds the fixed maximum.
		return reply.New(552, reply.Status{5, 3, 4}, "message size exceeds remote host's fixed maximum")
	}
	return nil
}

// txn is the state of one transaction.
type txn struct {
	c        *Conn
	res      []*reply.Error
	idx      []int // recipients sent, in command order
	accepted []int // recipients whose RCPT got a 2xx
}

// run sends the commands (MAIL, RCPTs, DATA), the body when DATA is
// accepted, and RSET after an aborted transaction.
func (t *txn) run(ctx context.Context, cmds []string, body []byte) error {
	c := t.c
	pipe := c.Has("PIPELINING")
	if pipe {
		// RFC 2920 §3.1: MAIL, RCPTs and DATA as one group, one write.
		for _, l := range cmds {
			c.writeLine(l)
		}
		if err := c.bw.Flush(); err != nil {
			return t.lost(ctx, err)
		}
	}
	mailOK := false
	var data *reply.Error
	for k, line := range cmds {
		isData := k == len(cmds)-1
		if !pipe {
			if k > 0 && !mailOK || isData && len(t.accepted) == 0 {
				break // lock-step: nothing left worth sending
			}
			c.writeLine(line)
			if err := c.bw.Flush(); err != nil {
				return t.lost(ctx, err)
			}
		}
		code, text, err := c.readReply(c.cfg.CommandTimeout) // RFC 5321 §4.5.3.2.2–.2.4
		if err != nil {
			return t.lost(ctx, err)
		}
		r := reply.Parse(code, text)
		switch {
		case k == 0:
			mailOK = code/100 == 2
			if !mailOK {
				t.fill(r) // RFC 2920 §3.1: RCPT replies after a refused MAIL say nothing
			}
		case isData:
			data = r
		case !mailOK:
		case code/100 == 2:
			t.accepted = append(t.accepted, t.idx[k-1])
		default:
			t.res[t.idx[k-1]] = rcptReply(r)
		}
		if code == 421 {
			return t.drop(r) // RFC 5321 §3.8: the server is closing
		}
	}

	if data != nil && data.Code == 354 {
		if len(t.accepted) == 0 {
			// RFC 2920 §3.1: DATA accepted with no valid recipient; end the
			// data at once and send no content.
			return t.endData(ctx, nil)
		}
		return t.endData(ctx, body)
	}
	if data != nil {
		t.fill(data) // DATA refused: that is the accepted recipients' answer
	}
	if mailOK {
		return t.rset(ctx)
	}
	return nil
}

// endData writes the body (none when nil, just the ".") and gives the final
// reply to every recipient not yet answered.
func (t *txn) endData(ctx context.Context, body []byte) error {
	c := t.c
	var err error
	if body == nil {
		err = c.writeLine(".")
	} else {
		err = writeBody(c.bw, body)
	}
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		return t.lost(ctx, err)
	}
	code, text, err := c.readReply(c.cfg.DataTimeout) // RFC 5321 §4.5.3.2.6
	if err != nil {
		return t.lost(ctx, err)
	}
	r := reply.Parse(code, text)
	if body != nil {
		c.sent++
		t.fill(r)
	}
	if code == 421 {
		return t.drop(r)
	}
	return nil
}

// rset ends an aborted transaction (RFC 5321 §4.1.1.5).
func (t *txn) rset(ctx context.Context) error {
	code, text, err := t.c.cmd("RSET")
	if err != nil {
		return t.lost(ctx, err)
	}
	if code/100 != 2 {
		return t.drop(reply.Parse(code, text))
	}
	return nil
}

// fill answers every sent recipient that has no answer yet with a copy of r.
func (t *txn) fill(r *reply.Error) {
	for _, i := range t.idx {
		if t.res[i] == nil {
			cp := *r
			t.res[i] = &cp
		}
	}
}

// lost marks the connection broken: unanswered recipients get 451 4.4.2.
func (t *txn) lost(ctx context.Context, err error) error {
	r := reply.Wrap(451, reply.Status{4, 4, 2}, "connection lost", withCtx(ctx, err))
	t.fill(r)
	t.c.broken = r
	return r
}

// drop marks the connection unusable because of reply r (a 421, or a failed
// RSET); unanswered recipients get r.
func (t *txn) drop(r *reply.Error) error {
	t.fill(r)
	t.c.broken = r
	return r
}

// rcptReply applies RFC 5321 §4.5.3.1.10: a 552 to RCPT (too many
// recipients, by old practice) is to be taken as the temporary 452.
func rcptReply(r *reply.Error) *reply.Error {
	if r.Code != 552 {
		return r
	}
	cp := *r
	cp.Code = 452
	if cp.Status[0] == 5 {
		cp.Status[0] = 4
	}
	return &cp
}
