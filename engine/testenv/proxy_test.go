package testenv

import (
	"testing"
	"time"
)

func TestProxyDetectsPipelining(t *testing.T) {
	t.Parallel()
	s := StartSink(t, "127.20.250.10:25", SinkOptions{})
	p := StartProxy(t, "127.20.250.11:25", s.Addr)

	// A lock-step client: one command, one reply.
	r := DialRaw(t, p.Addr)
	if rep := r.Cmd("EHLO client.test"); rep.Code != 250 {
		t.Fatalf("EHLO: %v", rep)
	}
	msg := GenMessage(1, 300, "x@d.test")
	if rep, err := r.Transaction("a@b.test", []string{"x@d.test", "y@d.test"}, msg); err != nil || rep.Code != 250 {
		t.Fatalf("lock-step transaction: %v %v", rep, err)
	}
	if got := p.PipelinedTransactions(); got != 0 {
		t.Errorf("lock-step: PipelinedTransactions() = %d, want 0", got)
	}

	// A pipelining client (RFC 2920 §3.1): MAIL, RCPT, RCPT, DATA in one
	// write, then the replies.
	if err := r.Write([]byte("MAIL FROM:<a@b.test>\r\nRCPT TO:<x@d.test>\r\nRCPT TO:<y@d.test>\r\nDATA\r\n")); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{250, 250, 250, 354} {
		if rep, err := r.ReadReply(); err != nil || rep.Code != want {
			t.Fatalf("pipelined reply %d: %v %v, want %d", i, rep, err, want)
		}
	}
	// A body with a line that looks like a command must not confuse it.
	if err := r.Write(DotStuff([]byte("Message-ID: <p@x>\r\n\r\nMAIL FROM:<in@body>\r\nRCPT TO:<in@body>\r\n"))); err != nil {
		t.Fatal(err)
	}
	if rep, err := r.ReadReply(); err != nil || rep.Code != 250 {
		t.Fatalf("pipelined data: %v %v", rep, err)
	}
	// Another lock-step one after the body.
	if rep, err := r.Transaction("a@b.test", []string{"x@d.test"}, msg); err != nil || rep.Code != 250 {
		t.Fatalf("third transaction: %v %v", rep, err)
	}
	r.Cmd("QUIT")
	s.WaitCount(t, 3, 5*time.Second)
	if got := p.PipelinedTransactions(); got != 1 {
		t.Errorf("PipelinedTransactions() = %d, want 1", got)
	}
	if got := p.Transactions(); got != 3 {
		t.Errorf("Transactions() = %d, want 3", got)
	}
	if got := p.Connections(); got != 1 {
		t.Errorf("Connections() = %d, want 1", got)
	}
}

func TestProxyRejectedDataIsNotBody(t *testing.T) {
	t.Parallel()
	s := StartSink(t, "127.20.250.12:25", SinkOptions{
		RcptReply: func(string, int) (int, string, string) { return 550, "5.1.1", "no" },
	})
	p := StartProxy(t, "127.20.250.13:25", s.Addr)
	r := DialRaw(t, p.Addr)
	r.Cmd("EHLO client.test")
	r.Cmd("MAIL FROM:<a@b.test>")
	r.Cmd("RCPT TO:<x@d.test>")
	if rep := r.Cmd("DATA"); rep.Code/100 != 5 && rep.Code != 503 {
		t.Fatalf("DATA without recipients: %v", rep)
	}
	// Commands after a refused DATA are commands again.
	if err := r.Write([]byte("MAIL FROM:<a@b.test>\r\nRCPT TO:<x@d.test>\r\n")); err != nil {
		t.Fatal(err)
	}
	r.ReadReply()
	r.ReadReply()
	r.Cmd("QUIT")
	if got, total := p.PipelinedTransactions(), p.Transactions(); got != 1 || total != 2 {
		t.Errorf("pipelined %d of %d, want 1 of 2", got, total)
	}
}

func TestProxyClose(t *testing.T) {
	t.Parallel()
	s := StartSink(t, "127.20.250.14:25", SinkOptions{})
	p := StartProxy(t, "127.20.250.15:25", s.Addr)
	r := DialRaw(t, p.Addr) // an idle connection held open
	p.Close()               // must not hang on it
	p.Close()
	if _, err := r.CmdErr("NOOP"); err == nil {
		if _, err := r.CmdErr("NOOP"); err == nil {
			t.Error("connection still proxied after Close")
		}
	}
}
