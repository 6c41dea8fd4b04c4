package scenario

import (
	"context"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-mta/sluice/bench/gen"
	"github.com/sluice-mta/sluice/bench/text"
	"github.com/sluice-mta/sluice/engine/dkim"
)

// benchFrom is the generator's From domain, which the dkim scenario signs.
const benchFrom = "sender.test"

// signFor is how long the signing ceiling is measured: 3 s, or 1 s for
// the small loads of tests.
func (e *env) signFor() time.Duration {
	if e.p.Messages < 5000 {
		return time.Second
	}
	return 3 * time.Second
}

// dkimRelay runs the clean load through sluice with an RSA-2048 key for
// the From domain, and compares its end-to-end rate with the signing
// ceiling: RSA-2048 signatures per second on every core (GOMAXPROCS
// goroutines signing the same kind of message), measured in the same run
// before and after, the higher kept. The issue asks ≥ 0.8.
func (e *env) dkimRelay(ctx context.Context, res *Result) error {
	key, err := rsa.GenerateKey(crand.Reader, 2048)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	path := filepath.Join(e.dir, "dkim-rsa2048.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	signer, err := dkim.New(dkim.Options{Keys: []dkim.Key{{Domain: benchFrom, Selector: "bench", Signer: key}}})
	if err != nil {
		return err
	}
	corpus, err := e.signCorpus()
	if err != nil {
		return err
	}

	first, err := e.signCeiling(ctx, signer, corpus)
	if err != nil {
		return err
	}
	e.extra = fmt.Sprintf("\n[[dkim-key]]\ndomain = %q\nselector = \"bench\"\nkey-file = %q\n", benchFrom, path)
	d, err := e.startDaemon("2s")
	if err != nil {
		return err
	}
	ph, err := e.measureDaemon(ctx, d, "sluice+dkim", "dkim", 0)
	d.stop(30 * time.Second)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, d.logTail())
	}
	again, err := e.signCeiling(ctx, signer, corpus)
	if err != nil {
		return err
	}
	ceil := first
	if again.E2ERate > ceil.E2ERate {
		ceil = again
	}
	res.Phases = append(res.Phases, ceil, ph)
	res.Ratios["e2e/sign-ceiling"] = ph.E2ERate / ceil.E2ERate
	// The same ratio from CPU time, which other load on the machine does
	// not skew: CPU per signature over CPU (daemon, generator and sink)
	// per message relayed. On an idle machine the two agree.
	if cpu := ph.CPUPer1k + ph.BenchCPU1k; cpu > 0 && ceil.BenchCPU1k > 0 {
		res.Ratios["e2e/sign-ceiling by CPU"] = ceil.BenchCPU1k / cpu
	}
	res.Notes = append(res.Notes,
		fmt.Sprintf("signing ceiling: RSA-2048 relaxed/relaxed signatures/s with %d goroutines (GOMAXPROCS) for %v, before and after: %.0f and %.0f; the higher is used",
			runtime.GOMAXPROCS(0), e.signFor(), first.E2ERate, again.E2ERate),
		"sluice+dkim: the clean load with one RSA-2048 [[dkim-key]] for the From domain; every message is signed once at spool time")
	return nil
}

// signCorpus returns messages shaped like the generator's: its headers,
// X-Job removed and a Received field added as the listener does.
func (e *env) signCorpus() ([][]byte, error) {
	sizes, err := gen.ParseSizes(e.p.Size)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for i := range 64 {
		size := sizes[i%len(sizes)].Value
		var b strings.Builder
		fmt.Fprintf(&b, "Received: from bench (127.0.0.1) by sluice.test with ESMTP id %d; %s\r\n", i, time.Now().Format(time.RFC1123Z))
		fmt.Fprintf(&b, "From: <bench@%s>\r\nTo: <r%d@d00.bench.test>\r\nSubject: bench %d\r\nMessage-ID: <%d@bench>\r\nDate: %s\r\n",
			benchFrom, i, i, i, time.Now().Format(time.RFC1123Z))
		b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
		b.WriteString(text.Prose(rand.New(rand.NewPCG(uint64(i), 7)), size-b.Len()))
		out = append(out, []byte(b.String()))
	}
	return out, nil
}

// signCeiling signs the corpus round-robin with GOMAXPROCS goroutines for
// signFor; E2ERate is signatures per second.
func (e *env) signCeiling(ctx context.Context, s *dkim.Signer, corpus [][]byte) (Phase, error) {
	n := runtime.GOMAXPROCS(0)
	e.progress("signing ceiling: %d goroutines for %v", n, e.signFor())
	ctx, cancel := context.WithTimeout(ctx, e.signFor())
	defer cancel()
	var count atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	m := startMeter()
	t0 := time.Now()
	for g := range n {
		wg.Go(func() {
			for i := g; ctx.Err() == nil; i += n {
				if _, err := s.Sign(corpus[i%len(corpus)]); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
				count.Add(1)
			}
		})
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	if firstErr != nil {
		return Phase{}, fmt.Errorf("signing ceiling: %w", firstErr)
	}
	ph := Phase{Name: "sign ceiling", Messages: int(count.Load()), Seconds: secs, E2ERate: float64(count.Load()) / secs}
	ph.meter(m)
	e.progress("signing ceiling: %.0f signatures/s", ph.E2ERate)
	return ph, nil
}
