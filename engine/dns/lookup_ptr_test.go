package dns

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mta/sluice/engine/dns/dnstest"
)

func TestLookupPTR(t *testing.T) {
	srv := dnstest.Start(t)
	srv.SetPTR("127.0.0.2", "v1.example.test")
	srv.SetPTR("::1", "Six.Example.Test.")
	r, err := New(Config{Servers: []string{srv.Addr()}, Timeout: time.Second}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got, err := r.LookupPTR(ctx, netip.MustParseAddr("127.0.0.2")); err != nil || !slices.Equal(got, []string{"v1.example.test"}) {
		t.Errorf("127.0.0.2: %v %v", got, err)
	}
	if got, err := r.LookupPTR(ctx, netip.MustParseAddr("::1")); err != nil || !slices.Equal(got, []string{"six.example.test"}) {
		t.Errorf("::1: %v %v", got, err)
	}
	if _, err := r.LookupPTR(ctx, netip.MustParseAddr("127.0.0.3")); err == nil {
		t.Error("no PTR: want an error")
	}
}
