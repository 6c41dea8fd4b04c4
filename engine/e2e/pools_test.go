package e2e

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// The tests of virtual MTAs and pools (issue 4) use 127.20.40.0/24 …
// 127.20.44.0/24, one per test, and the VMTA source addresses below.

// vmtaDef is one of the test VMTAs: name, source IP and EHLO name.
type vmtaDef struct{ name, ip, helo string }

// testVMTAs are v1 … v4 on 127.0.0.2 … 127.0.0.5.
var testVMTAs = []vmtaDef{
	{"v1", "127.0.0.2", "v1.example.test"},
	{"v2", "127.0.0.3", "v2.example.test"},
	{"v3", "127.0.0.4", "v3.example.test"},
	{"v4", "127.0.0.5", "v4.example.test"},
}

// vmtaByName and vmtaByIP index testVMTAs.
func vmtaByName(name string) (vmtaDef, bool) {
	for _, v := range testVMTAs {
		if v.name == name {
			return v, true
		}
	}
	return vmtaDef{}, false
}

func vmtaByIP(ip string) (vmtaDef, bool) {
	for _, v := range testVMTAs {
		if v.ip == ip {
			return v, true
		}
	}
	return vmtaDef{}, false
}

// vmtaTOML renders a [[virtual-mta]] block for one of testVMTAs; extra
// lines (keys of that table) are appended as written.
func vmtaTOML(name string, extra ...string) string {
	v, ok := vmtaByName(name)
	if !ok {
		panic("vmtaTOML: no test VMTA " + name) // programming error in this file
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[[virtual-mta]]\nname = %q\nsmtp-source-host = %q\n", v.name, v.ip+" "+v.helo)
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	b.WriteString("\n")
	return b.String()
}

// poolTOML renders a [[virtual-mta-pool]] block.
func poolTOML(name string, members ...string) string {
	q := make([]string, len(members))
	for i, m := range members {
		q[i] = fmt.Sprintf("%q", m)
	}
	return fmt.Sprintf("[[virtual-mta-pool]]\nname = %q\nvirtual-mtas = [%s]\n\n", name, strings.Join(q, ", "))
}

// allVMTAs renders the four test VMTAs.
func allVMTAs() string {
	var b strings.Builder
	for _, v := range testVMTAs {
		b.WriteString(vmtaTOML(v.name))
	}
	return b.String()
}

// withHeader returns msg with the header line prepended.
func withHeader(line string, msg []byte) []byte {
	return append([]byte(line+"\r\n"), msg...)
}

// hasHeader reports whether the header section of data holds a header
// named name (case-insensitive).
func hasHeader(data []byte, name string) bool {
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(data)
	}
	for _, line := range bytes.Split(data[:end], []byte("\r\n")) {
		k, _, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(strings.TrimSpace(string(k)), name) {
			return true
		}
	}
	return false
}

// checkShares fails t when the share of any key in got differs from want
// (fractions summing to 1) by more than tol (a fraction).
func checkShares(t *testing.T, what string, got map[string]int, want map[string]float64, tol float64) {
	t.Helper()
	total := 0
	for _, n := range got {
		total += n
	}
	if total == 0 {
		t.Errorf("%s: nothing counted", what)
		return
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var parts []string
	bad := false
	for _, k := range keys {
		share := float64(got[k]) / float64(total)
		parts = append(parts, fmt.Sprintf("%s=%d (%.1f%%, want %.1f%%)", k, got[k], 100*share, 100*want[k]))
		if math.Abs(share-want[k]) > tol {
			bad = true
		}
	}
	if bad {
		t.Errorf("%s: shares off by more than %.0f points: %s", what, 100*tol, strings.Join(parts, ", "))
	} else {
		t.Logf("%s: %s", what, strings.Join(parts, ", "))
	}
}

// waitTotal waits until the sinks together hold n messages; it fails t
// after timeout.
func waitTotal(t *testing.T, sinks []*testenv.Sink, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for count(sinks) < n {
		if time.Now().After(deadline) {
			t.Fatalf("sinks hold %d of %d messages after %v", count(sinks), n, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// injectMsgs submits n messages from `clients` sessions made by newIn; gen
// builds message i and its recipient. Any rejection fails t.
func injectMsgs(t *testing.T, n, clients int, newIn func() *testenv.Injector, gen func(i int) (rcpt string, msg []byte)) {
	t.Helper()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := newIn()
			defer in.Close()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				rcpt, msg := gen(i)
				if err := in.Send("sender@e2e.test", []string{rcpt}, msg); err != nil {
					t.Errorf("message %d to %s: %v", i, rcpt, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestPoolWeights sends 2,000 messages through a pool weighted 1:1:2:4 (the
// source's default-virtual-mta) and checks the share of each VMTA at the
// sinks (source IP) and in acct (vmta) within ±2 points, the EHLO name per
// source IP, and the acct fields vmtaPool, dlvSourceIp and queue.
func TestPoolWeights(t *testing.T) {
	t.Parallel()
	const (
		domains = 4
		total   = 2000
		clients = 8
	)
	dns := startDNS(t)
	sinks := make([]*testenv.Sink, domains)
	for i := range domains {
		domain := fmt.Sprintf("w%d.test", i+1)
		ip := fmt.Sprintf("127.20.40.%d", i+1)
		sinks[i] = testenv.StartSink(t, ip+":25", testenv.SinkOptions{Hostname: "mx." + domain})
		mxTo(dns, domain, ip)
	}
	d := testenv.StartDaemon(t, testenv.Config{
		Listen:  listenAddr(t, "127.20.40.254"),
		DNS:     []string{dns.Addr()},
		Sources: []testenv.Source{{CIDR: "127.0.0.0/8", Relay: true, DefaultVirtualMTA: "pool-a"}},
		Domains: map[string]testenv.Domain{
			"*": {MaxSMTPOut: 4, MaxMsgPerConnection: 100, RetryAfter: []string{"1s"}},
		},
		Extra: allVMTAs() + poolTOML("pool-a", "v1:1", "v2:1", "v3:2", "v4:4"),
	}.TOML())

	rcpt := func(i int) string { return fmt.Sprintf("user%d@w%d.test", i, i%domains+1) }
	ids := injectAll(t, d.Addr(), total, clients, 1000, rcpt)
	if len(ids) != total {
		t.Fatalf("%d of %d messages acknowledged", len(ids), total)
	}
	waitTotal(t, sinks, total, 40*time.Second)

	want := map[string]float64{"v1": 0.125, "v2": 0.125, "v3": 0.25, "v4": 0.5}
	byIP := map[string]int{}
	seen := map[string]int{}
	badHelo := 0
	for i, s := range sinks {
		perDomain := map[string]int{}
		for _, m := range s.Messages() {
			seen[m.MessageID]++
			v, ok := vmtaByIP(m.RemoteIP)
			name := "ip " + m.RemoteIP
			if ok {
				name = v.name
			}
			byIP[name]++
			perDomain[name]++
			if ok && m.Helo != v.helo {
				if badHelo++; badHelo <= 5 {
					t.Errorf("message from %s (%s) greeted with %q, want %q", m.RemoteIP, v.name, m.Helo, v.helo)
				}
			}
		}
		t.Logf("w%d.test by VMTA: %v", i+1, perDomain)
	}
	if badHelo > 0 {
		t.Errorf("%d messages with the wrong EHLO name", badHelo)
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("message %s arrived %d times", id, seen[id])
			break
		}
	}
	checkShares(t, "sink, by source IP", byIP, want, 0.02)

	recs := d.WaitAcct(t, testenv.OfType("d"), total, 15*time.Second)
	if len(recs) != total {
		t.Errorf("%d d rows, want %d", len(recs), total)
	}
	byVMTA := map[string]int{}
	badRows := 0
	for _, r := range recs {
		byVMTA[r["vmta"]]++
		v, ok := vmtaByName(r["vmta"])
		domain := r["rcpt"][strings.LastIndexByte(r["rcpt"], '@')+1:]
		if !ok || r["vmtaPool"] != "pool-a" || r["dlvSourceIp"] != v.ip || r["queue"] != domain+"/"+v.name {
			if badRows++; badRows <= 5 {
				t.Errorf("d row: vmta %q vmtaPool %q dlvSourceIp %q queue %q; want a VMTA of pool-a, vmtaPool \"pool-a\", its IP, queue %q",
					r["vmta"], r["vmtaPool"], r["dlvSourceIp"], r["queue"], domain+"/"+r["vmta"])
			}
		}
	}
	if badRows > 0 {
		t.Errorf("%d of %d d rows with wrong VMTA fields", badRows, len(recs))
	}
	checkShares(t, "acct d rows, by vmta", byVMTA, want, 0.02)
	if bad := testenv.Filter(d.Acct(), testenv.OfType("b", "t")); len(bad) > 0 {
		t.Errorf("%d b/t rows, want none:\n%s", len(bad), dump(bad[:min(5, len(bad))]))
	}
}

// TestHeaderSelection checks how a message's VMTA is chosen: X-Virtual-MTA
// naming a VMTA or a pool, over the source's default-virtual-mta, over the
// pool named "default"; an authenticated user's default-virtual-mta; the
// header never reaches the receiver; an unknown name is refused with
// 550 5.3.5 at the end of DATA and nothing is delivered.
func TestHeaderSelection(t *testing.T) {
	t.Parallel()
	const (
		domain  = "hs.test"
		otherIP = "127.20.41.100" // a source without default-virtual-mta
	)
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.41.1:25", testenv.SinkOptions{Hostname: "mx." + domain})
	mxTo(dns, domain, "127.20.41.1")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen: listenAddr(t, "127.20.41.254"),
		DNS:    []string{dns.Addr()},
		Sources: []testenv.Source{
			{CIDR: "127.0.0.0/8", Relay: true, ProcessXVirtualMTA: true, DefaultVirtualMTA: "v1"},
			{CIDR: otherIP + "/32", Relay: true, ProcessXVirtualMTA: true, PlainAuth: true},
		},
		Domains: map[string]testenv.Domain{"*": {MaxSMTPOut: 4, RetryAfter: []string{"1s"}}},
		Extra: allVMTAs() + poolTOML("pool-a", "v1:1", "v2:1", "v3:2", "v4:4") + poolTOML("default", "v2") +
			"[[smtp-user]]\nname = \"u4\"\npassword = \"pw4\"\ndefault-virtual-mta = \"v4\"\n",
	}.TOML())

	// The unknown name first: if it were accepted, it would be delivered
	// along with the others and show up below.
	t.Run("unknown", func(t *testing.T) {
		r := testenv.DialRaw(t, d.Addr())
		defer r.Close()
		if rep := r.Cmd("EHLO client.test"); rep.Code != 250 {
			t.Fatalf("EHLO: %v", rep)
		}
		for _, c := range []string{"MAIL FROM:<sender@e2e.test>", "RCPT TO:<unknown-0@" + domain + ">"} {
			if rep := r.Cmd(c); rep.Code/100 != 2 {
				t.Fatalf("%s: %v, want 2xx (the name is only known after DATA)", c, rep)
			}
		}
		if rep := r.Cmd("DATA"); rep.Code != 354 {
			t.Fatalf("DATA: %v, want 354", rep)
		}
		msg := withHeader("X-Virtual-MTA: nosuch", testenv.GenMessage(0, 300, "unknown-0@"+domain))
		if err := r.Write(testenv.DotStuff(msg)); err != nil {
			t.Fatal(err)
		}
		rep, err := r.ReadReply()
		if err != nil {
			t.Fatalf("reply to the final dot: %v", err)
		}
		if rep.Code != 550 || rep.Enh != "5.3.5" || !strings.Contains(strings.ToLower(strings.Join(rep.Lines, " ")), "virtual mta") {
			t.Errorf("X-Virtual-MTA: nosuch: %v, want 550 5.3.5 unknown virtual MTA", rep)
		}
		// The session stays usable.
		if rep := r.Cmd("RSET"); rep.Code != 250 {
			t.Errorf("RSET after the rejection: %v", rep)
		}
	})

	type selCase struct {
		name   string
		n      int
		header string // "" for none
		newIn  func() *testenv.Injector
	}
	plain := func() *testenv.Injector { return testenv.NewInjector(d.Addr()) }
	fromOther := func() *testenv.Injector {
		in := testenv.NewInjector(d.Addr())
		in.LocalIP = otherIP
		return in
	}
	asU4 := func() *testenv.Injector {
		in := fromOther()
		in.Auth = testenv.PlainAuth("u4", "pw4")
		return in
	}
	cases := []selCase{
		{"hdr-v3", 10, "X-Virtual-MTA: v3", plain},           // the header beats the source's default v1
		{"hdr-lower-v2", 4, "x-virtual-mta: v2", plain},      // header names are case-insensitive
		{"hdr-pool", 40, "X-Virtual-MTA: pool-a", plain},     // a pool: weighted rotation
		{"src-default", 6, "", plain},                        // the source's default-virtual-mta v1
		{"pool-default", 6, "", fromOther},                   // no default: the pool named "default" (v2)
		{"user-default", 6, "", asU4},                        // the user's default-virtual-mta v4
		{"hdr-other-src", 4, "X-Virtual-MTA: v4", fromOther}, // the header from the other source
	}
	sent := 0
	for _, c := range cases {
		injectMsgs(t, c.n, 2, c.newIn, func(i int) (string, []byte) {
			rcpt := fmt.Sprintf("%s-%d@%s", c.name, i, domain)
			msg := testenv.GenMessage(i, 300, rcpt)
			if c.header != "" {
				msg = withHeader(c.header, msg)
			}
			return rcpt, msg
		})
		sent += c.n
	}
	if t.Failed() {
		t.FailNow()
	}
	sink.WaitCount(t, sent, 20*time.Second)
	time.Sleep(500 * time.Millisecond) // let a wrongly accepted message show up
	recs := d.WaitAcct(t, testenv.OfType("d"), sent, 10*time.Second)

	byCase := map[string][]*testenv.Message{}
	for _, m := range sink.Messages() {
		if len(m.Rcpts) != 1 {
			t.Errorf("message %s with rcpts %v", m.MessageID, m.Rcpts)
			continue
		}
		c := caseOf(m.Rcpts[0])
		byCase[c] = append(byCase[c], m)
		if hasHeader(m.Data, "X-Virtual-MTA") {
			t.Errorf("%s arrived with an X-Virtual-MTA header", m.Rcpts[0])
		}
		if v, ok := vmtaByIP(m.RemoteIP); !ok || m.Helo != v.helo {
			t.Errorf("%s came from %s with EHLO %q; want a test VMTA's IP and name", m.Rcpts[0], m.RemoteIP, m.Helo)
		}
	}
	if n := len(byCase["unknown"]); n > 0 {
		t.Errorf("the message with an unknown X-Virtual-MTA was delivered %d times", n)
	}
	rows := map[string][]testenv.Record{}
	for _, r := range recs {
		c := caseOf(r["rcpt"])
		rows[c] = append(rows[c], r)
	}
	if n := len(testenv.Filter(d.Acct(), testenv.ForRcpt("unknown-0@"+domain))); n > 0 {
		t.Errorf("%d acct rows for the rejected message, want none", n)
	}

	// single checks that every message of a case went out through vmta,
	// with vmtaPool pool.
	single := func(c, vmta, pool string) {
		t.Helper()
		v, _ := vmtaByName(vmta)
		for _, m := range byCase[c] {
			if m.RemoteIP != v.ip || m.Helo != v.helo {
				t.Errorf("%s: %s came from %s EHLO %q, want %s EHLO %q", c, m.Rcpts[0], m.RemoteIP, m.Helo, v.ip, v.helo)
			}
		}
		for _, r := range rows[c] {
			if r["vmta"] != vmta || r["vmtaPool"] != pool || r["dlvSourceIp"] != v.ip || r["queue"] != domain+"/"+vmta {
				t.Errorf("%s: d row vmta %q vmtaPool %q dlvSourceIp %q queue %q; want %q %q %q %q",
					c, r["vmta"], r["vmtaPool"], r["dlvSourceIp"], r["queue"], vmta, pool, v.ip, domain+"/"+vmta)
			}
		}
	}
	for _, c := range cases {
		if len(byCase[c.name]) != c.n || len(rows[c.name]) != c.n {
			t.Errorf("%s: %d messages at the sink, %d d rows; want %d", c.name, len(byCase[c.name]), len(rows[c.name]), c.n)
		}
	}
	single("hdr-v3", "v3", "")
	single("hdr-lower-v2", "v2", "")
	single("src-default", "v1", "")
	single("pool-default", "v2", "default")
	single("user-default", "v4", "")
	single("hdr-other-src", "v4", "")

	// The pool: 40 picks of a 1:1:2:4 rotation are 5, 5, 10, 20.
	spread := map[string]int{}
	for _, m := range byCase["hdr-pool"] {
		v, _ := vmtaByIP(m.RemoteIP)
		spread[v.name]++
	}
	for name, want := range map[string]int{"v1": 5, "v2": 5, "v3": 10, "v4": 20} {
		if got := spread[name]; got < want-2 || got > want+2 {
			t.Errorf("X-Virtual-MTA: pool-a, 40 messages: %s sent %d, want %d±2 (all: %v)", name, got, want, spread)
		}
	}
	for _, r := range rows["hdr-pool"] {
		v, ok := vmtaByName(r["vmta"])
		if !ok || r["vmtaPool"] != "pool-a" || r["dlvSourceIp"] != v.ip {
			t.Errorf("hdr-pool: d row vmta %q vmtaPool %q dlvSourceIp %q", r["vmta"], r["vmtaPool"], r["dlvSourceIp"])
		}
	}
}

// caseOf returns the case name in a recipient "CASE-N@domain".
func caseOf(rcpt string) string {
	local, _, _ := strings.Cut(rcpt, "@")
	if i := strings.LastIndexByte(local, '-'); i > 0 {
		return local[:i]
	}
	return local
}

// TestWarmup: v1 is on warm-up day 1 with a cap of 10, v2 has none; 60
// messages through the 1:1 pool go 10 through v1 and 50 through v2. After a
// restart the day's count still holds: 20 more all go through v2.
func TestWarmup(t *testing.T) {
	t.Parallel()
	const domain = "wu.test"
	day := time.Now().UTC().Format(time.DateOnly)
	dns := startDNS(t)
	sink := testenv.StartSink(t, "127.20.42.1:25", testenv.SinkOptions{Hostname: "mx." + domain})
	mxTo(dns, domain, "127.20.42.1")
	d := testenv.StartDaemon(t, testenv.Config{
		Listen:  listenAddr(t, "127.20.42.254"),
		DNS:     []string{dns.Addr()},
		Sources: []testenv.Source{{CIDR: "127.0.0.0/8", Relay: true, DefaultVirtualMTA: "pool-w"}},
		Domains: map[string]testenv.Domain{"*": {MaxSMTPOut: 4, RetryAfter: []string{"1s"}}},
		Extra: vmtaTOML("v1", fmt.Sprintf("warmup-start = %q", day), "warmup-daily = [10]") +
			vmtaTOML("v2") + poolTOML("pool-w", "v1:1", "v2:1"),
	}.TOML())

	send := func(from, n int) {
		injectMsgs(t, n, 4, func() *testenv.Injector { return testenv.NewInjector(d.Addr()) }, func(i int) (string, []byte) {
			rcpt := fmt.Sprintf("user%d@%s", from+i, domain)
			return rcpt, testenv.GenMessage(from+i, 300, rcpt)
		})
		if t.Failed() {
			t.FailNow()
		}
	}
	byIP := func() map[string]int {
		m := map[string]int{}
		for _, msg := range sink.Messages() {
			m[msg.RemoteIP]++
		}
		return m
	}
	byVMTA := func(n int) map[string]int {
		m := map[string]int{}
		for _, r := range d.WaitAcct(t, testenv.OfType("d"), n, 10*time.Second) {
			m[r["vmta"]]++
		}
		return m
	}

	// sameDay skips the test when the UTC day changed since the start: the
	// warm-up day moved on and the counts mean nothing.
	sameDay := func() {
		if now := time.Now().UTC().Format(time.DateOnly); now != day {
			t.Skipf("the UTC day changed during the test (%s → %s)", day, now)
		}
	}

	send(0, 60)
	sink.WaitCount(t, 60, 20*time.Second)
	sameDay()
	if got := byIP(); got["127.0.0.2"] != 10 || got["127.0.0.3"] != 50 || len(got) != 2 {
		t.Errorf("60 messages by source IP: %v, want 127.0.0.2 (v1, cap 10): 10, 127.0.0.3 (v2): 50", got)
	}
	if got := byVMTA(60); got["v1"] != 10 || got["v2"] != 50 {
		t.Errorf("60 d rows by vmta: %v, want v1: 10, v2: 50", got)
	}

	d.Restart()
	send(60, 20)
	sink.WaitCount(t, 80, 20*time.Second)
	time.Sleep(300 * time.Millisecond) // a message over the cap would show up
	sameDay()
	if got := byIP(); got["127.0.0.2"] != 10 || got["127.0.0.3"] != 70 || len(got) != 2 {
		t.Errorf("after a restart and 20 more, by source IP: %v, want 127.0.0.2 (v1): still 10, 127.0.0.3 (v2): 70", got)
	}
	if got := byVMTA(80); got["v1"] != 10 || got["v2"] != 70 {
		t.Errorf("80 d rows by vmta: %v, want v1: 10, v2: 70", got)
	}
}
