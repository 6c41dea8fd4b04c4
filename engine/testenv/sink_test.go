package testenv

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// testenv's own tests use 127.20.250.0/24 (the e2e tests use the rest of
// 127.20.0.0/16).

func TestSinkAcceptsAndRecords(t *testing.T) {
	t.Parallel()
	s := StartSink(t, "127.20.250.1:25", SinkOptions{Hostname: "mx.sink.test"})
	in := NewInjector(s.Addr)
	in.LocalIP = "127.20.250.100"
	in.Helo = "client.test"
	defer in.Close()
	var ids []string
	for i := range 3 {
		msg := GenMessage(i, 2000, "x@d.test")
		ids = append(ids, MessageID(msg))
		if err := in.Send("a@b.test", []string{"x@d.test", "y@d.test"}, msg); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	s.WaitCount(t, 3, 5*time.Second)
	msgs := s.Messages()
	for i, m := range msgs {
		if m.MessageID != ids[i] || m.From != "a@b.test" || strings.Join(m.Rcpts, ",") != "x@d.test,y@d.test" {
			t.Errorf("message %d = %+v", i, m)
		}
		if m.RemoteIP != "127.20.250.100" || m.Helo != "client.test" || m.ConnID != 1 {
			t.Errorf("message %d: ip %s helo %s conn %d", i, m.RemoteIP, m.Helo, m.ConnID)
		}
		if len(m.Data) < 2000 || time.Since(m.Time) > time.Minute {
			t.Errorf("message %d: %d bytes at %v", i, len(m.Data), m.Time)
		}
	}
	got := s.MessageIDs()
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("MessageIDs()[%s] = %d", id, got[id])
		}
	}
	if s.Connections() != 1 || s.MaxConcurrent() != 1 {
		t.Errorf("connections %d, max concurrent %d", s.Connections(), s.MaxConcurrent())
	}
}

func TestSinkScriptedReplies(t *testing.T) {
	t.Parallel()
	s := StartSink(t, "127.20.250.2:25", SinkOptions{
		RcptReply: func(rcpt string, attempt int) (int, string, string) {
			switch {
			case strings.HasPrefix(rcpt, "bad@"):
				return 550, "5.1.1", "no such user"
			case strings.HasPrefix(strings.ToLower(rcpt), "later@") && attempt <= 2:
				return 451, "4.3.0", "try later"
			}
			return 0, "", ""
		},
		DataReply: func(m *Message, attempt int) (int, string, string) {
			if strings.Contains(string(m.Data), "Subject: test message 99") && attempt == 1 {
				return 554, "5.7.1", "content rejected"
			}
			return 250, "", ""
		},
	})
	in := NewInjector(s.Addr)
	defer in.Close()

	err := in.Send("a@b.test", []string{"bad@d.test"}, GenMessage(1, 0, "bad@d.test"))
	if code, enh := ReplyCode(err); code != 550 || enh != "5.1.1" {
		t.Errorf("bad rcpt: %v (code %d %s)", err, code, enh)
	}
	for attempt := 1; attempt <= 3; attempt++ {
		err := in.Send("a@b.test", []string{"LATER@d.test"}, GenMessage(2, 0, "later@d.test"))
		code, _ := ReplyCode(err)
		if (attempt <= 2 && code != 451) || (attempt == 3 && err != nil) {
			t.Errorf("later attempt %d: %v", attempt, err)
		}
	}
	if n := len(s.RcptAttempts("later@D.TEST")); n != 3 {
		t.Errorf("RcptAttempts(later) = %d, want 3", n)
	}
	msg := GenMessage(99, 0, "x@d.test")
	err = in.Send("a@b.test", []string{"x@d.test"}, msg)
	if code, enh := ReplyCode(err); code != 554 || enh != "5.7.1" {
		t.Errorf("data reply attempt 1: %v", err)
	}
	if err := in.Send("a@b.test", []string{"x@d.test"}, msg); err != nil {
		t.Errorf("data reply attempt 2: %v", err)
	}
	if got := s.Count(); got != 2 {
		t.Errorf("Count() = %d, want 2 (later@ and the resent message)", got)
	}
	if got := s.MessageIDs()[MessageID(msg)]; got != 1 {
		t.Errorf("resent message recorded %d times", got)
	}
}

func TestSinkConcurrentSessionsAndDelay(t *testing.T) {
	t.Parallel()
	s := StartSink(t, "127.20.250.3:25", SinkOptions{Delay: 200 * time.Millisecond})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := Inject(t, s.Addr, "a@b.test", []string{"x@d.test"}, GenMessage(i, 100, "x@d.test")); err != nil {
				t.Errorf("inject %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if s.Count() != 4 || s.Connections() != 4 {
		t.Errorf("count %d, connections %d", s.Count(), s.Connections())
	}
	if s.MaxConcurrent() < 2 {
		t.Errorf("MaxConcurrent() = %d; the delayed sessions should overlap", s.MaxConcurrent())
	}
}

func TestSinkMaxMessageBytes(t *testing.T) {
	t.Parallel()
	s := StartSink(t, "127.20.250.4:25", SinkOptions{MaxMessageBytes: 10000})
	err := Inject(t, s.Addr, "a@b.test", []string{"x@d.test"}, GenMessage(1, 20000, "x@d.test"))
	if code, _ := ReplyCode(err); code != 552 {
		t.Errorf("oversized: %v", err)
	}
	if s.Count() != 0 {
		t.Errorf("oversized message recorded")
	}
}

func TestSinkClose(t *testing.T) {
	t.Parallel()
	s := StartSink(t, "127.20.250.5:25", SinkOptions{})
	s.Close()
	s.Close()
	if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		c.Close()
		t.Error("closed sink still accepts")
	}
}

func TestMessageID(t *testing.T) {
	cases := []struct{ in, want string }{
		{"Message-ID: <a@b>\r\nSubject: x\r\n\r\nbody", "<a@b>"},
		{"Subject: x\r\nmessage-id:\r\n <folded@b>\r\n\r\nMessage-ID: <inbody@b>\r\n", "<folded@b>"},
		{"Subject: x\n\nMessage-ID: <inbody@b>\n", ""},
		{"X-Client-Addr: 127.0.0.1\nMessage-Id: <lf@b>\n\nbody\n", "<lf@b>"},
		{"", ""},
	}
	for _, c := range cases {
		if got := MessageID([]byte(c.in)); got != c.want {
			t.Errorf("MessageID(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
