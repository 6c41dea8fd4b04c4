package throttle

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// TestMain fails the run if goroutines outlive the tests. It allows 3s for
// them to end, not goleak's usual half second: go-redis's dial prober, left
// by the outage tests, sleeps 1s between dials and only then sees its pool
// closed.
func TestMain(m *testing.M) {
	redis.SetLogger(quiet{}) // go-redis reports every refused dial of the outage tests
	code := m.Run()
	if code == 0 {
		err := goleak.Find()
		for deadline := time.Now().Add(3 * time.Second); err != nil && time.Now().Before(deadline); {
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// perTest turns a constructor into an opener whose calls within one test
// return the same backend, so "two nodes" share it; the test's cleanup
// closes it.
func perTest(newBackend func(t *testing.T) Backend) opener {
	var mu sync.Mutex
	byTest := make(map[*testing.T]Backend)
	return func(t *testing.T) Backend {
		mu.Lock()
		defer mu.Unlock()
		if b, ok := byTest[t]; ok {
			return b
		}
		b := newBackend(t)
		byTest[t] = b
		t.Cleanup(func() {
			b.Close()
			mu.Lock()
			delete(byTest, t)
			mu.Unlock()
		})
		return b
	}
}
