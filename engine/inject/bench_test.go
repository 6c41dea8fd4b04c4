package inject

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/bench/text"
)

// benchRequest is a 10 KB template (text and HTML, bench/text.Template, a few
// fields per part) with n recipients, each with its own values.
func benchRequest(n int) []byte {
	textBody, htmlBody := text.Template()
	textBody += "{{.brand}}\r\n"
	req := Request{
		EnvelopeSender: "bounces@shop.test", Job: "bench",
		Content:       Content{From: "Shop <shop@shop.test>", Subject: "Hello {{.name}}", TextBody: textBody, HTMLBody: htmlBody},
		Substitutions: map[string]any{"brand": "Shop"},
	}
	for i := range n {
		req.Recipients = append(req.Recipients, Recipient{Email: fmt.Sprintf("user%d@d%d.test", i, i%20),
			Substitutions: map[string]any{"name": fmt.Sprintf("User %d", i), "code": fmt.Sprintf("C%06d", i)}})
	}
	b, _ := json.Marshal(req)
	return b
}

// BenchmarkInjectHTTP measures recipients accepted durably per second
// through the handler, a real synced spool and the submit pipeline, for
// requests of 10,000 recipients.
func BenchmarkInjectHTTP(b *testing.B) {
	f := newFixture(b, nil)
	body := string(benchRequest(10000))
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		code, rep := f.post(b, body)
		if code != 200 || !strings.Contains(string(rep), `"accepted":10000`) {
			b.Fatalf("%d %.200s", code, rep)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(10000*b.N)/b.Elapsed().Seconds(), "rcpts/s")
	// CPU per recipient: on a loaded machine, 2e6/µs is what 2 idle cores allow.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(10000*b.N), "cpu-µs/rcpt")
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
