package scenario

import (
	"context"
	"testing"
)

// TestDKIM runs the dkim scenario small: a signing ceiling before and
// after, and 200 signed messages through sluice.
func TestDKIM(t *testing.T) {
	res, err := Run(context.Background(), params(t, "dkim", 28))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Phases) != 2 || res.Phases[0].Name != "sign ceiling" || res.Phases[1].Name != "sluice+dkim" {
		t.Fatalf("phases %+v", res.Phases)
	}
	if c, s := res.Phases[0], res.Phases[1]; c.E2ERate <= 0 || s.Messages != 200 || s.Recipients != 200 ||
		res.Ratios["e2e/sign-ceiling"] <= 0 || res.Ratios["e2e/sign-ceiling by CPU"] <= 0 {
		t.Errorf("phases %+v, ratios %v", res.Phases, res.Ratios)
	}
}
