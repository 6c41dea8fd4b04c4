package gen_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/bench/gen"
	"github.com/sluice-mta/sluice/bench/sink"
)

// Addresses of these tests: 127.30.21.0/24, port 0.

func TestParse(t *testing.T) {
	sizes, err := gen.ParseSizes("1k:60, 5K:30,2m")
	if err != nil || len(sizes) != 3 || sizes[0] != (gen.Weighted[int]{Value: 1024, Weight: 60}) ||
		sizes[2] != (gen.Weighted[int]{Value: 2 << 20, Weight: 1}) {
		t.Errorf("ParseSizes = %v, %v", sizes, err)
	}
	doms, err := gen.ParseDomains("A.test:5,b.test")
	if err != nil || len(doms) != 2 || doms[0] != (gen.Weighted[string]{Value: "a.test", Weight: 5}) || doms[1].Weight != 1 {
		t.Errorf("ParseDomains = %v, %v", doms, err)
	}
	for _, bad := range []string{"", "x", "5q", "1k:-1", "100m"} {
		if _, err := gen.ParseSizes(bad); err == nil {
			t.Errorf("ParseSizes(%q): no error", bad)
		}
	}
}

func TestRunAgainstSink(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "sink.jsonl")
	rules := sink.Rules{}
	rules.Add("bad.test:100%:550 5.1.1 no")
	s, err := sink.Start(sink.Options{Addrs: []string{"127.30.21.1:0", "127.30.21.2:0"}, Rules: rules, LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addrs := sinkAddrs(t, s)

	sizes, _ := gen.ParseSizes("1k:1,20k:1")
	doms, _ := gen.ParseDomains("heavy.test:9,light.test:1")
	r, err := gen.Run(context.Background(), gen.Options{
		Addrs: addrs, Messages: 300, Sessions: 4, PerSession: 7, Rcpts: 2,
		Sizes: sizes, Domains: doms, Job: "j1", VMTA: "v1", RunID: "t", Timeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 300 || r.Failed != 0 || r.Rcpts != 600 || r.Rate() <= 0 {
		t.Fatalf("result: sent %d failed %d rcpts %d errors %v", r.Sent, r.Failed, r.Rcpts, r.Errors)
	}
	arr := s.Arrivals()
	n := 0
	r.Accepted(func(mid string, at time.Time) {
		n++
		if a, ok := arr[mid]; !ok || a.After(at) {
			t.Errorf("%s: sink arrival %v, generator 250 at %v", mid, a, at)
		}
	})
	if n != 300 {
		t.Errorf("Accepted gave %d messages", n)
	}
	st := s.Stats()
	if st.Messages != 300 || st.Conns < 300/7 {
		t.Errorf("sink stats %v", st)
	}
	s.Close()

	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	domains := map[string]int{}
	small, large := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e sink.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		domains[e.Domain]++
		if e.Size < 5000 {
			small++
		} else {
			large++
		}
	}
	if domains["heavy.test"] < 220 || domains["light.test"] < 10 || small < 100 || large < 100 {
		t.Errorf("first-recipient domains %v, sizes small %d large %d", domains, small, large)
	}

	// A message whose every recipient is refused fails; the run says so.
	s2, err := sink.Start(sink.Options{Addrs: []string{"127.30.21.3:0"}, Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	bad, _ := gen.ParseDomains("bad.test")
	r, err = gen.Run(context.Background(), gen.Options{Addrs: sinkAddrs(t, s2), Messages: 3, Sessions: 1, Domains: bad, Timeout: 5 * time.Second})
	if err != nil || r.Sent != 0 || r.Failed != 3 || len(r.Errors) == 0 {
		t.Errorf("all refused: %+v, %v", r, err)
	}
}

func TestRate(t *testing.T) {
	s, err := sink.Start(sink.Options{Addrs: []string{"127.30.21.4:0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := gen.Run(context.Background(), gen.Options{Addrs: sinkAddrs(t, s), Messages: 50, Sessions: 4, Rate: 200, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if d := r.End.Sub(r.Start); d < 200*time.Millisecond || r.Sent != 50 {
		t.Errorf("50 messages at 200/s took %v (sent %d)", d, r.Sent)
	}
}

func sinkAddrs(t *testing.T, s *sink.Sink) []string {
	t.Helper()
	a := s.Addrs()
	if len(a) == 0 {
		t.Fatal("sink has no addresses")
	}
	return a
}
