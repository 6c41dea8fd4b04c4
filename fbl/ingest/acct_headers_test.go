package ingest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/acct"
	"github.com/sluice-mta/sluice/fbl/suppress"
)

// TestAcctHeaderColumns: f and rb records carry the configured header_*
// columns, read from the original message the report returned (folded
// values unfolded, any case of the name), in a real acct file.
func TestAcctHeaderColumns(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	aw, err := acct.Open(acct.Options{Dir: dir, Now: func() time.Time { return now }, HeaderFields: []string{"Subject", "X-Campaign"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer aw.Close()
	store, err := suppress.NewLocal(suppress.NewMemKV(), suppress.WithPurgeInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	s := New(Options{Keys: keys, Store: store, Acct: aw, FBLAddrs: []string{"fbl@fbl.test"}, BounceAddrs: []string{"bounces@b.test"},
		SuppressTypes: []string{"abuse"}, HardCategories: []string{"bad-mailbox"}})
	ctx := context.Background()

	orig := traced("a@x.test", "j1") + "x-campaign: spring,\r\n \"2026\"\r\n"
	if _, err := s.Ingest(ctx, KindFBL, arfMsg("abuse", orig)); err != nil {
		t.Fatal(err)
	}
	dsn := "From: MAILER-DAEMON@mx.x.test\r\nTo: bounces@b.test\r\nSubject: Undelivered\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=D\r\n\r\n" +
		"--D\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--D\r\nContent-Type: message/delivery-status\r\n\r\n" +
		"Reporting-MTA: dns; mx.x.test\r\n\r\nFinal-Recipient: rfc822; b@x.test\r\nAction: failed\r\nStatus: 5.1.1\r\n" +
		"Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n" +
		"--D\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: s@s.test\r\nSubject: Bounced one\r\nX-Campaign: c2\r\n\r\n--D--\r\n"
	if _, err := s.Ingest(ctx, KindBounce, []byte(dsn)); err != nil {
		t.Fatal(err)
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	rows, err := acct.ReadFile(filepath.Join(dir, "acct-2026-11-28.csv"))
	if err != nil || len(rows) != 2 {
		t.Fatalf("rows %v, %v", rows, err)
	}
	f, rb := rows[0], rows[1]
	if f["type"] != "f" || f["header_Subject"] != "hi" || f["header_X-Campaign"] != `spring, "2026"` {
		t.Errorf("f record: %v", f)
	}
	if rb["type"] != "rb" || rb["rcpt"] != "b@x.test" || rb["header_Subject"] != "Bounced one" || rb["header_X-Campaign"] != "c2" {
		t.Errorf("rb record: %v", rb)
	}
}
