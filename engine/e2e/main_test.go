package e2e

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluice-mta/sluice/engine/dns/dnstest"
	"github.com/sluice-mta/sluice/engine/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// listenAddr returns the daemon's listener address in a test's /24.
func listenAddr(t *testing.T, ip string) string {
	t.Helper()
	return testenv.FreeAddr(t, ip)
}

// startDNS starts a DNS server whose answers expire after a second, so the
// daemon's cache never hides a change a test makes.
func startDNS(t *testing.T) *dnstest.Server {
	t.Helper()
	s := dnstest.Start(t)
	s.SetTTL(1)
	return s
}

// mxTo points domain's MX (preference 10) at "mx.<domain>" with A record ip.
func mxTo(s *dnstest.Server, domain, ip string) {
	s.SetMX(domain, dnstest.MX{Pref: 10, Host: "mx." + domain})
	s.SetA("mx."+domain, ip)
}

// injectAll submits n messages of about size bytes from `clients`
// concurrent sessions; rcpt(i) addresses message i. It returns the
// Message-IDs the daemon acknowledged with 250; a rejection fails t.
func injectAll(t *testing.T, addr string, n, clients, size int, rcpt func(i int) string) []string {
	t.Helper()
	var (
		mu   sync.Mutex
		ids  []string
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := testenv.NewInjector(addr)
			defer in.Close()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				to := rcpt(i)
				msg := testenv.GenMessage(i, size, to)
				if err := in.Send("sender@e2e.test", []string{to}, msg); err != nil {
					t.Errorf("message %d to %s: %v", i, to, err)
					return
				}
				mu.Lock()
				ids = append(ids, testenv.MessageID(msg))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ids
}

// sendOne submits one message to rcpts and returns its Message-ID.
func sendOne(t *testing.T, addr string, rcpts ...string) string {
	t.Helper()
	msg := testenv.GenMessage(0, 500, rcpts[0])
	if err := testenv.Inject(t, addr, "sender@e2e.test", rcpts, msg); err != nil {
		t.Fatalf("inject to %v: %v", rcpts, err)
	}
	return testenv.MessageID(msg)
}

// typesOf lists the records' types in order, as "t t d".
func typesOf(recs []testenv.Record) string {
	var s []string
	for _, r := range recs {
		s = append(s, r.Type())
	}
	return strings.Join(s, " ")
}

// dump renders records one per line for failure messages.
func dump(recs []testenv.Record) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "  %s\n", r)
	}
	return b.String()
}
