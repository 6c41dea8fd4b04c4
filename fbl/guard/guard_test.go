package guard

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newGuard(o Options) (*Guard, *clock) {
	clk := &clock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	o.Now = clk.Now
	return New(o), clk
}

// step is one action of a scenario: advance the clock, then count
// deliveries and complaints for job and vmta; want lists the trips of the
// step as "kind:name".
type step struct {
	advance     time.Duration
	job, vmta   string
	deliveries  int
	complaints  int
	want        []string
	wantJobRate string // "deliveries/complaints" of job after the step, if set
}

func run(t *testing.T, g *Guard, clk *clock, steps []step) {
	t.Helper()
	for i, s := range steps {
		clk.Advance(s.advance)
		var got []string
		for range s.deliveries {
			for _, tr := range g.Delivered(s.job, s.vmta) {
				got = append(got, tr.Kind+":"+tr.Name)
			}
		}
		for range s.complaints {
			for _, tr := range g.Complaint(s.job, s.vmta) {
				got = append(got, tr.Kind+":"+tr.Name)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(s.want) {
			t.Errorf("step %d: trips %v, want %v", i, got, s.want)
		}
		if s.wantJobRate != "" {
			_, d, c := g.Rate(s.job)
			if got := fmt.Sprintf("%d/%d", d, c); got != s.wantJobRate {
				t.Errorf("step %d: job counts %s, want %s", i, got, s.wantJobRate)
			}
		}
	}
}

func TestGuard(t *testing.T) {
	cases := []struct {
		name  string
		opts  Options
		steps []step
	}{
		{"below min volume, then volume arrives", Options{}, []step{
			{job: "j", vmta: "v", deliveries: 999, complaints: 10, wantJobRate: "999/10"},
			{job: "j", vmta: "v", deliveries: 1, want: []string{"job:j", "vmta:v"}}, // the 1000th delivery trips
			{job: "j", vmta: "v", deliveries: 10, complaints: 10},                   // already paused: no new trip
		}},
		{"rate exactly at the limit does not trip", Options{}, []step{
			{job: "j", deliveries: 1000, complaints: 3},
			{job: "j", complaints: 1, want: []string{"job:j"}},
		}},
		{"old deliveries leave the window", Options{Window: time.Hour, Bucket: time.Minute, MinVolume: 100, MaxRate: 0.05}, []step{
			{job: "j", deliveries: 100, wantJobRate: "100/0"},
			{advance: 30 * time.Minute, job: "j", deliveries: 100, complaints: 5, wantJobRate: "200/5"},
			{advance: 31 * time.Minute, job: "j", complaints: 1, wantJobRate: "100/6", want: []string{"job:j"}}, // the first 100 are gone: 6/100 > 5%
		}},
		{"a tripped job's complaints expire too", Options{Window: time.Hour, Bucket: time.Minute, MinVolume: 10}, []step{
			{job: "j", deliveries: 10, complaints: 1, want: []string{"job:j"}},
			{advance: 2 * time.Hour, job: "j", deliveries: 1, wantJobRate: "1/0"},
		}},
		{"whole window skipped at once", Options{Window: time.Hour, Bucket: time.Minute, MinVolume: 10}, []step{
			{job: "j", deliveries: 10},
			{advance: 1000 * time.Hour, job: "j", complaints: 1, wantJobRate: "0/1"},
		}},
		{"vmta trips where no job does", Options{}, []step{
			{job: "a", vmta: "v", deliveries: 1000},
			{job: "b", vmta: "v", deliveries: 500, complaints: 6, want: []string{"vmta:v"}}, // v: 6/1500 = 0.004
			{job: "a", vmta: "v", complaints: 3},                                            // a: 3/1000 is the limit, not over it
		}},
		{"empty names are not counted", Options{MinVolume: 1}, []step{
			{deliveries: 5, complaints: 5},
			{job: "", vmta: "v", deliveries: 1, complaints: 1, want: []string{"vmta:v"}},
		}},
		{"clock stepping back counts into the newest bucket", Options{Window: time.Hour, Bucket: time.Minute, MinVolume: 10}, []step{
			{job: "j", deliveries: 10},
			{advance: -30 * time.Minute, job: "j", deliveries: 10, wantJobRate: "20/0"},
			{advance: 30*time.Minute + 59*time.Minute, job: "j", wantJobRate: "20/0"},
			{advance: 2 * time.Minute, job: "j", wantJobRate: "0/0"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, clk := newGuard(c.opts)
			run(t, g, clk, c.steps)
		})
	}
}

func TestGuardVMTAScenarioDetail(t *testing.T) {
	// A job at the limit trips on one more complaint, whatever its VMTA.
	g, clk := newGuard(Options{})
	run(t, g, clk, []step{
		{job: "a", vmta: "v", deliveries: 1000, complaints: 3},
		{job: "a", vmta: "w", complaints: 1, want: []string{"job:a"}},
	})
	if !g.Paused("a") || g.VMTAPaused("w") || g.VMTAPaused("v") {
		t.Errorf("paused: a=%v w=%v v=%v", g.Paused("a"), g.VMTAPaused("w"), g.VMTAPaused("v"))
	}
}

func TestPauseResume(t *testing.T) {
	var mu sync.Mutex
	var seen []Trip
	g, clk := newGuard(Options{MinVolume: 100, OnTrip: func(tr Trip) {
		mu.Lock()
		seen = append(seen, tr)
		mu.Unlock()
	}})
	if g.Paused("j") || g.Resume("j") {
		t.Fatalf("fresh guard has j paused")
	}
	for range 100 {
		g.Delivered("j", "v")
	}
	trips := g.Complaint("j", "v")
	if len(trips) != 2 {
		t.Fatalf("trips = %+v", trips)
	}
	tr := trips[0]
	if tr.Kind != KindJob || tr.Name != "j" || tr.Deliveries != 100 || tr.Complaints != 1 || tr.Rate != 0.01 || !tr.At.Equal(clk.Now()) {
		t.Errorf("trip = %+v", tr)
	}
	if len(seen) != 2 || seen[0] != trips[0] || seen[1] != trips[1] {
		t.Errorf("OnTrip saw %+v", seen)
	}
	if !g.Paused("j") || !g.VMTAPaused("v") || g.Paused("v") || g.VMTAPaused("j") {
		t.Errorf("job and vmta pauses mixed up")
	}
	if n := len(g.PausedList()); n != 2 {
		t.Errorf("PausedList has %d", n)
	}
	if !g.Resume("j") || g.Paused("j") || g.Resume("j") {
		t.Errorf("Resume did not release j once")
	}
	if r, d, c := g.Rate("j"); r != 0 || d != 0 || c != 0 {
		t.Errorf("after Resume: rate %v %d/%d, want a fresh start", r, d, c)
	}
	// Judged again only after MinVolume new deliveries.
	if trips := g.Complaint("j", ""); len(trips) != 0 {
		t.Errorf("re-tripped right after Resume: %+v", trips)
	}
	for range 99 {
		g.Delivered("j", "")
	}
	if trips := g.Delivered("j", ""); len(trips) != 1 || trips[0].Name != "j" {
		t.Errorf("after 100 new deliveries: %+v", trips)
	}
	if !g.ResumeVMTA("v") || g.VMTAPaused("v") {
		t.Errorf("ResumeVMTA")
	}
	g.Pause(Trip{Kind: KindVMTA, Name: "x"})
	if !g.VMTAPaused("x") {
		t.Errorf("Pause by hand")
	}
}

func TestRate(t *testing.T) {
	g, _ := newGuard(Options{})
	if r, d, c := g.Rate("none"); r != 0 || d != 0 || c != 0 {
		t.Errorf("unknown job: %v %d %d", r, d, c)
	}
	for range 400 {
		g.Delivered("j", "v")
	}
	g.Complaint("j", "v")
	if r, d, c := g.Rate("j"); r != 0.0025 || d != 400 || c != 1 {
		t.Errorf("Rate = %v %d %d", r, d, c)
	}
	if r, _, _ := g.VMTARate("v"); r != 0.0025 {
		t.Errorf("VMTARate = %v", r)
	}
}

func TestDefaults(t *testing.T) {
	g := New(Options{})
	if g.o.Window != 24*time.Hour || g.o.Bucket != 12*time.Minute || g.n != 120 || g.o.MaxRate != 0.003 || g.o.MinVolume != 1000 || g.o.Now == nil {
		t.Errorf("defaults: %+v n=%d", g.o, g.n)
	}
	g = New(Options{Window: time.Minute})
	if g.o.Bucket != time.Second || g.n != 60 {
		t.Errorf("short window: bucket %v n %d", g.o.Bucket, g.n)
	}
	g = New(Options{Window: time.Minute, Bucket: time.Hour})
	if g.n != 1 {
		t.Errorf("bucket wider than the window: n %d", g.n)
	}
}

func TestForgetsIdleNames(t *testing.T) {
	g, clk := newGuard(Options{Window: time.Hour, Bucket: time.Minute, MaxNames: 3})
	for i := range 5 {
		g.Delivered(fmt.Sprintf("job%d", i), "")
	}
	if n := len(g.counts); n != 3 || g.Untracked() != 2 {
		t.Errorf("tracked %d, untracked %d; want 3 and 2", n, g.Untracked())
	}
	clk.Advance(61 * time.Minute)
	g.Delivered("fresh", "")
	if _, ok := g.counts[key{0, "fresh"}]; !ok || len(g.counts) != 1 {
		t.Errorf("after a window idle: %d names", len(g.counts))
	}
}

func TestConcurrent(t *testing.T) {
	g, clk := newGuard(Options{MinVolume: 100, Window: time.Hour, Bucket: time.Second})
	var wg sync.WaitGroup
	var mu sync.Mutex
	trips := 0
	for w := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				job := fmt.Sprintf("job%d", i%4)
				vmta := fmt.Sprintf("v%d", w%2)
				n := len(g.Delivered(job, vmta))
				if i%50 == 0 {
					n += len(g.Complaint(fmt.Sprintf("job%d", i/50%4), vmta))
					clk.Advance(time.Millisecond * 100)
				}
				g.Paused(job)
				g.Rate(job)
				mu.Lock()
				trips += n
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// 2% complaints everywhere: every job and both VMTAs trip exactly once.
	if trips != 6 || len(g.PausedList()) != 6 {
		t.Errorf("%d trips, %d paused; want 6", trips, len(g.PausedList()))
	}
}

func BenchmarkDelivered(b *testing.B) {
	g := New(Options{})
	jobs := make([]string, 64)
	for i := range jobs {
		jobs[i] = fmt.Sprintf("job%d", i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			g.Delivered(jobs[i&63], "vmta1")
			i++
		}
	})
}

func BenchmarkComplaint(b *testing.B) {
	g := New(Options{MaxRate: 1}) // never trips, so each call does the full check
	for range 1000 {
		g.Delivered("job", "vmta")
	}
	b.ReportAllocs()
	for b.Loop() {
		g.Complaint("job", "vmta")
	}
}
