package config

import (
	"slices"
	"testing"
	"time"
)

func TestLogsDefaultsAndValues(t *testing.T) {
	c := mustLoad(t, `
[[listener]]
address = "127.0.0.1:2525"
[acct-file]
max-size = "1G"
move-interval = "1h"
delete-after = "30d"
[webhook]
url = "https://hooks.example.test/sluice"
events = ["bounce", "complaint"]
`)
	if a := c.AcctFile; a.MaxSize != 1<<30 || a.MoveInterval.D() != time.Hour || a.DeleteAfter.D() != 30*24*time.Hour {
		t.Errorf("AcctFile = %+v", a)
	}
	w := c.Webhook
	if !w.Enabled() || w.BatchSize != 100 || w.FlushInterval.D() != 5*time.Second || w.MaxQueued != 10000 ||
		w.Timeout.D() != 10*time.Second || w.MaxRetryDelay.D() != 5*time.Minute || !slices.Equal(w.Events, []string{"bounce", "complaint"}) {
		t.Errorf("Webhook = %+v", w)
	}
	if c := mustLoad(t, "[[listener]]\naddress = \"127.0.0.1:2525\"\n"); c.Webhook.Enabled() || c.AcctFile != (AcctFile{}) {
		t.Errorf("without the tables: webhook %+v, acct-file %+v", c.Webhook, c.AcctFile)
	}
}
