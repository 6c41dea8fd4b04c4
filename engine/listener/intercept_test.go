package listener

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-mta/sluice/engine/config"
	"github.com/sluice-mta/sluice/engine/reply"
)

// fakeGate is a recording Gate (the listener's own seam).
type fakeGate struct {
	mu      sync.Mutex
	taken   []string // "kind rcpts size"
	dropped []string
}

func (g *fakeGate) Claims(rcpt string) string {
	switch {
	case strings.HasPrefix(rcpt, "fbl@"):
		return "fbl"
	case strings.HasPrefix(rcpt, "bounces"):
		return "bounce"
	}
	return ""
}

func (g *fakeGate) Take(_ context.Context, kind string, rcpts []string, msg []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.taken = append(g.taken, kind+" "+strings.Join(rcpts, ","))
	if strings.Contains(string(msg), "junk") {
		return reply.New(550, reply.Status{5, 6, 0}, "not a report")
	}
	return nil
}

func (g *fakeGate) Suppressed(_ context.Context, rcpt, _ string) (bool, error) {
	return strings.HasPrefix(rcpt, "gone"), nil
}

func (g *fakeGate) Dropped(from, rcpt, scope, ip string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.dropped = append(g.dropped, rcpt+" "+ip)
}

func TestGate(t *testing.T) {
	sp := &memSpool{}
	g := &fakeGate{}
	addr := start(t, "127.32.0.1:0", sp, func(o *Options) {
		o.Sources = []config.Source{
			{CIDR: prefix("127.32.0.0/24"), AlwaysAllowRelaying: true},
			{CIDR: prefix("127.32.1.0/24"), AlwaysAllowRelaying: true, OnSuppressed: config.OnSuppressedDrop},
		}
		o.Gate = g
	})

	// Reports from a client with no relay rights.
	c := dial(t, "127.32.2.2", addr)
	c.cmd("MAIL FROM:<>", "250")
	c.cmd("RCPT TO:<someone@else.test>", "550 5.7.1")
	c.cmd("RCPT TO:<fbl@fbl.test>", "250")
	c.cmd("RCPT TO:<bounces@b.test>", "452 4.5.3") // kinds apart
	c.data("Subject: report\r\n\r\nbody\r\n", "250")
	c.cmd("MAIL FROM:<>", "250")
	c.cmd("RCPT TO:<bounces+x@b.test>", "250")
	c.data("Subject: junk\r\n\r\njunk\r\n", "550 5.6.0")
	c.cmd("MAIL FROM:<>", "250")
	c.cmd("RCPT TO:<fbl@fbl.test>", "250")
	fmtBig := strings.Repeat(strings.Repeat("x", 998)+"\r\n", (maxReportSize/1000)+2)
	c.data("Subject: big\r\n\r\n"+fmtBig, "552 5.3.4")
	c.cmd("RSET", "250")

	// A relaying client: suppressed recipients refused; no mixing.
	r := dial(t, "127.32.0.2", addr)
	r.cmd("MAIL FROM:<s@x.test>", "250")
	r.cmd("RCPT TO:<gone@rcpt.test>", "550 5.7.1")
	r.cmd("RCPT TO:<here@rcpt.test>", "250")
	r.cmd("RCPT TO:<fbl@fbl.test>", "452 4.5.3")
	r.data("Subject: x\r\n\r\nhello\r\n", "250")

	// accept-and-drop: 250, recorded, not spooled; DATA with nothing left.
	d := dial(t, "127.32.1.2", addr)
	d.cmd("MAIL FROM:<s@x.test>", "250")
	d.cmd("RCPT TO:<gone@rcpt.test>", "250")
	d.data("Subject: x\r\n\r\nhello\r\n", "250")

	g.mu.Lock()
	defer g.mu.Unlock()
	if strings.Join(g.taken, ";") != "fbl fbl@fbl.test;bounce bounces+x@b.test" {
		t.Errorf("taken = %q", g.taken)
	}
	if len(g.dropped) != 1 || g.dropped[0] != "gone@rcpt.test 127.32.1.2" {
		t.Errorf("dropped = %q", g.dropped)
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if len(sp.msgs) != 1 || len(sp.msgs[0].Rcpts) != 1 || sp.msgs[0].Rcpts[0].Addr != "here@rcpt.test" {
		t.Errorf("spooled %d messages: %+v", len(sp.msgs), sp.msgs)
	}
}
