package smtpd

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// BenchmarkDataReceive compares receiving messages with go-smtp's server
// and with this engine, over loopback, one connection, the envelope
// pipelined: go test -run '^$' -bench DataReceive ./engine/smtpd
func BenchmarkDataReceive(b *testing.B) {
	for _, size := range []int{5 << 10, 100 << 10} {
		body := benchBody(size)
		name := map[int]string{5 << 10: "5KB", 100 << 10: "100KB"}[size]
		b.Run("go-smtp/"+name, func(b *testing.B) {
			srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{}, nil }))
			srv.Domain, srv.MaxMessageBytes, srv.MaxLineLength = "mx.test", 1<<20, 2000
			srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
			ln, err := net.Listen("tcp", "127.40.3.1:0")
			must(b, err)
			go srv.Serve(ln)
			defer srv.Close()
			sendLoop(b, ln.Addr().String(), body)
		})
		b.Run("smtpd/"+name, func(b *testing.B) {
			addr, _ := startServer(b, "127.40.3.1", BackendFunc(func(*Conn) (Session, error) { return &sinkSession{}, nil }), nil)
			sendLoop(b, addr, body)
		})
	}
}

// sinkSession reads each message into a reused buffer, as the listener
// does, and accepts it.
type sinkSession struct{ buf bytes.Buffer }

func (s *sinkSession) Reset()                               {}
func (s *sinkSession) Logout() error                        { return nil }
func (s *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *sinkSession) Data(r io.Reader) error               { s.buf.Reset(); _, err := s.buf.ReadFrom(r); return err }

// benchBody is a message of about size bytes in 78-octet lines.
func benchBody(size int) []byte {
	var b bytes.Buffer
	b.WriteString("Subject: bench\r\nMessage-ID: <x@bench.test>\r\n\r\n")
	line := strings.Repeat("abcdefghij", 7) + "klmnop\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

func sendLoop(b *testing.B, addr string, body []byte) {
	c, err := net.Dial("tcp", addr)
	must(b, err)
	defer c.Close()
	br := bufio.NewReader(c)
	bw := bufio.NewWriterSize(c, 64<<10)
	readReply := func(want byte) {
		for {
			line, err := br.ReadString('\n')
			if err != nil || line[0] != want {
				b.Fatalf("reply %q %v", line, err)
			}
			if len(line) < 4 || line[3] != '-' {
				return
			}
		}
	}
	readReply('2')
	bw.WriteString("EHLO client.test\r\n")
	bw.Flush()
	readReply('2')
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bw.WriteString("MAIL FROM:<a@mail.test>\r\nRCPT TO:<b@rcpt.test>\r\nDATA\r\n")
		bw.Flush()
		readReply('2')
		readReply('2')
		readReply('3')
		bw.Write(body)
		bw.Flush()
		readReply('2')
	}
	b.StopTimer()
	bw.WriteString("QUIT\r\n")
	bw.Flush()
}
