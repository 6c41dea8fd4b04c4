package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/bench/text"
	"github.com/sluice-mta/sluice/engine/dns/dnstest"
	"github.com/sluice-mta/sluice/engine/testenv"
)

// BenchmarkInjectHTTP measures, against the real daemon, recipients
// accepted durably per second through POST /api/v1/inject (a 10 KB
// template, 10,000 recipients per request, 2 requests at a time) and,
// in the same run, messages per second injected over SMTP (10 KB, 16
// sessions). The recipients' MX takes a connection and then stalls, so
// delivery costs nothing beside injection; the acct file has the default
// record types (no r).
//
//	go test -run '^$' -bench InjectHTTP -benchtime 1x ./engine/e2e/
//
// With SLUICE_BENCH_PROFILE=FILE the daemon's CPU profile of the HTTP
// phase is saved to FILE (go tool pprof FILE).
func BenchmarkInjectHTTP(b *testing.B) {
	dns := dnstest.Start(b)
	dns.SetMX("bench.test", dnstest.MX{Pref: 10, Host: "mx.bench.test"})
	dns.SetA("mx.bench.test", "127.20.92.1")
	testenv.StartSink(b, "127.20.92.1:25", testenv.SinkOptions{Delay: time.Hour})
	api := testenv.FreeAddr(b, "127.20.92.253")
	profile := os.Getenv("SLUICE_BENCH_PROFILE")
	var opts []testenv.Option
	pprofAddr := testenv.FreeAddr(b, "127.20.92.252")
	if profile != "" {
		opts = append(opts, testenv.WithArgs("--pprof", pprofAddr))
	}
	d := testenv.StartDaemon(b, testenv.Config{
		Listen:      testenv.FreeAddr(b, "127.20.92.254"),
		DNS:         []string{dns.Addr()},
		LogLevel:    "info",
		AcctRecords: []string{"d", "b", "t"},
		Domains:     map[string]testenv.Domain{"*": {MaxSMTPOut: 1, RetryAfter: []string{"1h"}}},
		Extra:       fmt.Sprintf("\n[admin]\nlisten = %q\ntoken = %q\n", api, injectAdminToken),
	}.TOML(), opts...)
	testenv.WaitListening(b, api, 10*time.Second)

	const perRequest, requests = 10000, 4
	bodies := make([]string, requests)
	for r := range requests {
		bodies[r] = benchInjectRequest(r, perRequest)
	}
	b.ResetTimer()
	for range b.N {
		// HTTP: 4 requests of 10,000, two at a time.
		var profDone chan struct{}
		if profile != "" {
			profDone = make(chan struct{})
			go func() { defer close(profDone); saveProfile(b, pprofAddr, profile) }()
		}
		cpu0 := procCPU(b, d.Pid())
		t0 := time.Now()
		var wg sync.WaitGroup
		var accepted atomic.Int64
		sem := make(chan struct{}, 2)
		for r := range requests {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				req, _ := http.NewRequest("POST", "http://"+api+"/api/v1/inject", strings.NewReader(bodies[r]))
				req.Header.Set("Authorization", "Bearer "+injectAdminToken)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				defer resp.Body.Close()
				var rep injectReply
				json.NewDecoder(resp.Body).Decode(&rep)
				if resp.StatusCode != 200 {
					b.Errorf("status %d: %s", resp.StatusCode, rep.Error)
				}
				accepted.Add(int64(rep.Accepted))
			}()
		}
		wg.Wait()
		httpRate := float64(accepted.Load()) / time.Since(t0).Seconds()
		httpCPU := (procCPU(b, d.Pid()) - cpu0).Seconds() * 1e6 / float64(max(accepted.Load(), 1))
		if profDone != nil {
			<-profDone
		}

		// SMTP: 10,000 messages of 10 KB from 16 sessions.
		const msgs, sessions = 10000, 16
		msg := testenv.GenMessage(0, 10<<10, "x@bench.test")
		cpu0 = procCPU(b, d.Pid())
		t0 = time.Now()
		var next, ok atomic.Int64
		for range sessions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				in := testenv.NewInjector(d.Addr())
				defer in.Close()
				for {
					i := next.Add(1)
					if i > msgs {
						return
					}
					if err := in.Send("bounces@shop.test", []string{fmt.Sprintf("s%d@bench.test", i)}, msg); err == nil {
						ok.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		smtpRate := float64(ok.Load()) / time.Since(t0).Seconds()
		smtpCPU := (procCPU(b, d.Pid()) - cpu0).Seconds() * 1e6 / float64(max(ok.Load(), 1))
		b.ReportMetric(httpRate, "http-rcpts/s")
		b.ReportMetric(smtpRate, "smtp-msgs/s")
		// Daemon CPU per message: on a loaded machine the rates above show
		// the share of CPU the daemon got; 2e6/µs is the rate 2 idle cores
		// would allow.
		b.ReportMetric(httpCPU, "http-cpu-µs/rcpt")
		b.ReportMetric(smtpCPU, "smtp-cpu-µs/msg")
	}
}

// benchInjectRequest is a request of n recipients with a 10 KB template
// (bench/text.Template: about 4 KB of text and 6 KB of HTML).
func benchInjectRequest(r, n int) string {
	textBody, htmlBody := text.Template()
	req := map[string]any{
		"envelope_sender": "bounces@shop.test", "job": "bench",
		"content": map[string]any{"from": "Shop <shop@shop.test>", "subject": "Hello {{.name}}",
			"text_body": textBody, "html_body": htmlBody},
	}
	rcpts := make([]map[string]any, n)
	for i := range n {
		rcpts[i] = map[string]any{"email": fmt.Sprintf("r%d-%d@bench.test", r, i),
			"substitutions": map[string]string{"name": fmt.Sprintf("User %d", i), "code": fmt.Sprintf("C%06d", i)}}
	}
	req["recipients"] = rcpts
	b, _ := json.Marshal(req)
	return string(b)
}

// procCPU is the user+system CPU time process pid has used (Linux).
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatalf("cpu of %d: %v", pid, err)
	}
	// Fields after the command, which is in parentheses: utime is the
	// 14th field, stime the 15th, in clock ticks (100 per second).
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// saveProfile saves a 2-second CPU profile of the daemon serving pprof on
// addr to file.
func saveProfile(tb testing.TB, addr, file string) {
	resp, err := http.Get("http://" + addr + "/debug/pprof/profile?seconds=2")
	if err != nil {
		tb.Errorf("profile: %v", err)
		return
	}
	defer resp.Body.Close()
	out, err := os.Create(file)
	if err != nil {
		tb.Errorf("profile: %v", err)
		return
	}
	defer out.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		tb.Errorf("profile: %v", err)
	}
}
