package testenv

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"
)

func TestGenMessage(t *testing.T) {
	a, b := GenMessage(7, 5000, "x@d.test"), GenMessage(7, 5000, "x@d.test")
	if len(a) < 5000 || len(a) > 5100 {
		t.Errorf("size %d, want about 5000", len(a))
	}
	ida, idb := MessageID(a), MessageID(b)
	if !strings.HasPrefix(ida, "<7.") || ida == idb {
		t.Errorf("Message-IDs %q %q: want unique, numbered", ida, idb)
	}
	if bytes.Contains(bytes.ReplaceAll(a, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("bare LF in generated message")
	}
	if small := GenMessage(1, 0, "x@d.test"); !bytes.HasSuffix(small, []byte("\r\n\r\n")) {
		t.Errorf("header-only message ends %q", small[len(small)-8:])
	}
}

func TestDotStuff(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a\r\n", "a\r\n.\r\n"},
		{"a", "a\r\n.\r\n"},
		{".x\r\n..y\r\nz.\r\n", "..x\r\n...y\r\nz.\r\n.\r\n"},
		{"", ".\r\n"},
	}
	for _, c := range cases {
		if got := string(DotStuff([]byte(c.in))); got != c.want {
			t.Errorf("DotStuff(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestRawReplies(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.20.250.30:25")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { // a scripted peer for this test only
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("220 hi\r\n"))
		buf := make([]byte, 100)
		c.Read(buf)
		c.Write([]byte("250-first\r\n250-SIZE 100\r\n250 2.0.0 last\r\n"))
		c.Read(buf)
		c.Write([]byte("550 5.7.1 relaying denied\r\n"))
		c.Read(buf)
		c.Write([]byte("250-a\r\n251 b\r\n"))
		c.Read(buf)
		c.Write([]byte("22\r\n"))
	}()
	r := DialRaw(t, "127.20.250.30:25")
	if r.Greeting.Code != 220 || r.Greeting.Lines[0] != "hi" {
		t.Errorf("greeting %v", r.Greeting)
	}
	if rep := r.Cmd("EHLO x"); rep.Code != 250 || len(rep.Lines) != 3 || rep.Enh != "2.0.0" {
		t.Errorf("EHLO reply %+v", rep)
	}
	if rep := r.Cmd("RCPT TO:<x@y>"); rep.Code != 550 || rep.Enh != "5.7.1" || rep.String() != "550 5.7.1 relaying denied" {
		t.Errorf("RCPT reply %+v", rep)
	}
	if _, err := r.CmdErr("X"); err == nil {
		t.Error("mixed codes accepted")
	}
	if _, err := r.CmdErr("Y"); err == nil {
		t.Error("short line accepted")
	}
}

func TestFreePortAndWaitListening(t *testing.T) {
	port := FreePort(t, "127.20.250.31")
	if port <= 0 {
		t.Fatalf("port %d", port)
	}
	addr := FreeAddr(t, "127.20.250.31")
	if err := waitListening(addr, 100*time.Millisecond, nil); err == nil {
		t.Error("nothing listens, yet waitListening succeeded")
	}
	abort := make(chan struct{})
	close(abort)
	if err := waitListening(addr, 10*time.Second, abort); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("aborted wait: %v", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	WaitListening(t, addr, time.Second)
}
