package delivery

import (
	"bytes"
	"testing"
	"time"
)

// BenchmarkSendPipelined sends 5 KB messages over one pipelined connection
// to an in-process go-smtp server that discards them.
func BenchmarkSendPipelined(b *testing.B) {
	be := &sink{discard: true}
	c := dialT(b, startGoSMTP(b, be, nil), testConfig())
	body := append([]byte("From: a@src.test\r\nTo: x@dst.test\r\nSubject: bench\r\n\r\n"),
		bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"), 5000/74)...)
	env := Envelope{From: "a@src.test", Rcpts: rcpts("x@dst.test")}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		res, err := c.Send(ctxb, env, body)
		if err != nil || res[0].Code != 250 {
			b.Fatalf("Send = %v, %v", res, err)
		}
	}
	b.ReportMetric(float64(c.Sent())/time.Since(start).Seconds(), "msgs/s")
	c.Quit()
}
