package testenv

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"
)

// PipeliningProbe is a TCP proxy in front of an SMTP server that detects
// RFC 2920 pipelining by the client: a transaction counts as pipelined when
// the client's RCPT (or DATA) reached the proxy before the proxy had
// forwarded the server's reply to that transaction's MAIL FROM. The reply
// is marked forwarded just before it is written, so a client that waits is
// never counted. A STARTTLS session becomes opaque after the 220 and is not
// analysed further; BDAT is not understood.
type PipeliningProbe struct {
	Addr   string
	target string
	l      net.Listener
	wg     sync.WaitGroup // the accept loop and every proxied connection

	mu        sync.Mutex
	conns     map[net.Conn]struct{}
	closed    bool
	total     int // MAIL commands seen
	pipelined int // of which pipelined
	nconns    int
}

// StartProxy listens on listenAddr and forwards each connection to
// targetAddr until the test ends.
func StartProxy(tb testing.TB, listenAddr, targetAddr string) *PipeliningProbe {
	tb.Helper()
	l, err := net.Listen("tcp", listenAddr)
	if err != nil {
		tb.Fatalf("proxy listen %s: %v", listenAddr, err)
	}
	p := &PipeliningProbe{Addr: l.Addr().String(), target: targetAddr, l: l, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.acceptLoop()
	tb.Cleanup(p.Close)
	return p
}

// Close stops accepting, closes every proxied connection and waits for the
// goroutines; it is idempotent.
func (p *PipeliningProbe) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.l.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track registers c for Close; it reports false once closed.
func (p *PipeliningProbe) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *PipeliningProbe) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve proxies one connection; it returns when both directions are done.
func (p *PipeliningProbe) serve(client net.Conn) {
	defer p.wg.Done()
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	if !p.track(server) {
		return
	}
	p.mu.Lock()
	p.nconns++
	p.mu.Unlock()

	st := &probeConn{p: p, mailReply: -1, dataReply: -1}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // server → client, ended by either side closing
		defer wg.Done()
		defer client.Close()
		st.pump(server, client, st.serverChunk)
	}()
	st.pump(client, server, st.clientChunk)
	server.Close()
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// PipelinedTransactions returns how many transactions were pipelined.
func (p *PipeliningProbe) PipelinedTransactions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pipelined
}

// Transactions returns how many MAIL commands passed through.
func (p *PipeliningProbe) Transactions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// Connections returns how many connections were proxied.
func (p *PipeliningProbe) Connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nconns
}

// probeConn follows one SMTP session in both directions. Replies are
// numbered from 0 (the greeting); command k (from 0) is answered by reply
// k+1, and the end of DATA counts as a command.
type probeConn struct {
	p *PipeliningProbe

	mu        sync.Mutex
	forwarded int      // replies forwarded to the client
	codes     []string // code of each reply, by number
	cmds      int      // commands sent by the client
	mailReply int      // number of the reply owed to the open MAIL; -1 if none
	counted   bool     // the open MAIL was already counted as pipelined
	dataReply int      // number of the reply to the last DATA command; -1 if none
	inBody    bool     // the client is sending message content
	opaque    bool     // after STARTTLS: not analysed
	cbuf      bytes.Buffer
	sbuf      bytes.Buffer
}

func (pc *probeConn) pump(src, dst net.Conn, inspect func([]byte)) {
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			inspect(buf[:n]) // before forwarding: see the header comment
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// lines appends chunk to buf and returns the complete lines in it, bounded
// so that a peer cannot grow buf without limit.
func lines(buf *bytes.Buffer, chunk []byte) []string {
	buf.Write(chunk)
	var out []string
	for {
		i := bytes.IndexByte(buf.Bytes(), '\n')
		if i < 0 {
			break
		}
		line := string(bytes.TrimRight(buf.Next(i+1), "\r\n"))
		if len(line) > 512 {
			line = line[:512]
		}
		out = append(out, line)
	}
	if buf.Len() > 64*1024 { // a long body line: only its start matters
		buf.Reset()
	}
	return out
}

func (pc *probeConn) serverChunk(chunk []byte) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.opaque {
		return
	}
	for _, l := range lines(&pc.sbuf, chunk) {
		if len(l) >= 3 && (len(l) == 3 || l[3] == ' ') { // last line of a reply
			pc.codes = append(pc.codes, l[:3])
			pc.forwarded++
		}
	}
}

func (pc *probeConn) clientChunk(chunk []byte) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.opaque {
		return
	}
	for _, l := range lines(&pc.cbuf, chunk) {
		if pc.inBody {
			if l == "." {
				pc.inBody = false
				pc.cmds++ // the end of data is answered like a command
			}
			continue
		}
		if pc.dataReply >= 0 { // the first line after DATA: body or command?
			r := pc.dataReply
			pc.dataReply = -1
			if r < len(pc.codes) && pc.codes[r] == "354" {
				pc.inBody = true
				if l == "." {
					pc.inBody = false
					pc.cmds++
				}
				continue
			}
		}
		verb := strings.ToUpper(strings.TrimSpace(l))
		if i := strings.IndexAny(verb, " :"); i >= 0 {
			verb = verb[:i]
		}
		reply := pc.cmds + 1
		pc.cmds++
		switch verb {
		case "MAIL":
			pc.mailReply, pc.counted = reply, false
			pc.p.mu.Lock()
			pc.p.total++
			pc.p.mu.Unlock()
		case "RCPT", "DATA":
			if pc.mailReply > 0 && !pc.counted && pc.forwarded <= pc.mailReply {
				pc.counted = true
				pc.p.mu.Lock()
				pc.p.pipelined++
				pc.p.mu.Unlock()
			}
			if verb == "DATA" {
				pc.dataReply = reply
				pc.mailReply = -1
			}
		case "RSET":
			pc.mailReply = -1
		case "STARTTLS":
			pc.opaque = true
			return
		}
	}
}
