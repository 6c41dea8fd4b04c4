package dkim_test

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-mta/sluice/engine/dkim"
	"github.com/sluice-mta/sluice/engine/dkim/dkimtest"
	"github.com/sluice-mta/sluice/engine/reply"
)

func message(from string, extra ...string) []byte {
	var b bytes.Buffer
	b.WriteString("Received: from client by mta; Sat, 28 Nov 2026 08:00:00 +0000\r\n")
	b.WriteString("From: News <" + from + ">\r\n")
	b.WriteString("To: someone@rcpt.test\r\n")
	b.WriteString("Subject: a test\r\n  folded\r\n")
	b.WriteString("Date: Sat, 28 Nov 2026 08:00:00 +0000\r\n")
	b.WriteString("Message-ID: <1@example.test>\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain\r\n")
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("X-Unsigned: yes\r\n\r\nHello  there \r\n\r\n\r\n")
	return b.Bytes()
}

type keys struct {
	rsa, ed crypto.Signer
	recs    dkimtest.Records
}

var (
	keysOnce sync.Once
	theKeys  keys
)

// newKeys makes the test keys once: RSA generation is slow under -race.
func newKeys(t *testing.T) keys {
	keysOnce.Do(func() { theKeys = makeKeys(t) })
	return theKeys
}

func makeKeys(t *testing.T) keys {
	k := keys{rsa: dkimtest.Key(t, "rsa2048.pem"), ed: dkimtest.Key(t, "ed25519.pem"), recs: dkimtest.Records{}}
	k.recs.Add(t, "example.test", "s2048", k.rsa)
	k.recs.Add(t, "example.test", "ed", k.ed)
	return k
}

func (k keys) signer(t *testing.T, def string) *dkim.Signer {
	s, err := dkim.New(dkim.Options{DefaultDomain: def, Keys: []dkim.Key{
		{Domain: "Example.TEST", Selector: "s2048", Signer: k.rsa},
		{Domain: "example.test", Selector: "ed", Signer: k.ed},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var hTag = regexp.MustCompile(`(?s)\bh=([^;]*);`)

// signatures returns the DKIM-Signature fields of msg's header.
func signatures(msg []byte) []string {
	head, _, _ := strings.Cut("\r\n"+string(msg), "\r\n\r\n")
	return strings.Split(head, "\r\nDKIM-Signature:")[1:]
}

// TestSignBothKeys: RSA-2048 and Ed25519 keys for the From domain give two
// relaxed/relaxed signatures, both verified by go-msgauth and by dkimpy.
func TestSignBothKeys(t *testing.T) {
	k := newKeys(t)
	s := k.signer(t, "")
	msg := message("news@example.test", "List-Unsubscribe: <https://u.test/1>", "List-Unsubscribe-Post: List-Unsubscribe=One-Click", "Feedback-ID: a:b:c:sluice")
	out, err := s.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(out, msg) {
		t.Fatal("the signed message does not end with the original")
	}
	sigs := signatures(out)
	if len(sigs) != 2 {
		t.Fatalf("%d signatures, want 2:\n%s", len(sigs), out)
	}
	for _, sig := range sigs {
		flat := strings.Join(strings.Fields(sig), "")
		if !strings.Contains(flat, "c=relaxed/relaxed;") || !strings.Contains(flat, "d=example.test;") {
			t.Errorf("signature lacks c=relaxed/relaxed or d=example.test: %s", sig)
		}
		m := hTag.FindStringSubmatch(flat)
		want := "From:From:To:Subject:Date:Message-ID:MIME-Version:Content-Type:List-Unsubscribe:List-Unsubscribe-Post:Feedback-ID"
		if m == nil || m[1] != want {
			t.Errorf("h=%v, want %s", m, want)
		}
	}
	got, err := dkimtest.VerifyGo(out, k.recs)
	if err != nil || len(got) != 2 || !got[0].OK || !got[1].OK {
		t.Fatalf("go-msgauth: %+v %v", got, err)
	}
	py, err := dkimtest.VerifyPython(t, [][]byte{out}, k.recs)
	if err != nil {
		t.Fatal(err)
	}
	if len(py[0]) != 2 || !py[0][0].OK || !py[0][1].OK {
		t.Fatalf("dkimpy: %+v", py[0])
	}
	sels := []string{py[0][0].Selector, py[0][1].Selector}
	slices.Sort(sels)
	if !slices.Equal(sels, []string{"ed", "s2048"}) {
		t.Errorf("selectors %v", sels)
	}
}

// TestOversignedFrom: a From added after signing breaks both signatures,
// and so does a changed Subject; an unsigned header may be added.
func TestOversignedFrom(t *testing.T) {
	k := newKeys(t)
	out, err := k.signer(t, "").Sign(message("news@example.test"))
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := bytes.Cut(out, []byte("\r\n\r\n"))
	for _, tc := range []struct {
		name string
		msg  []byte
		ok   bool
	}{
		{"unchanged", out, true},
		{"added X- header", append(append(slices.Clone(head), "\r\nX-Later: 1\r\n\r\n"...), body...), true},
		{"added From", append(append(slices.Clone(head), "\r\nFrom: evil@attacker.test\r\n\r\n"...), body...), false},
		{"changed Subject", bytes.Replace(out, []byte("Subject: a test"), []byte("Subject: a tesT"), 1), false},
	} {
		res, err := dkimtest.VerifyGo(tc.msg, k.recs)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for _, r := range res {
			if r.OK != tc.ok {
				t.Errorf("%s: %s verified %v, want %v (%s)", tc.name, r.Domain, r.OK, tc.ok, r.Err)
			}
		}
	}
}

// TestKeySelection: only the From domain's keys sign (ignoring case); other
// mail is left alone, or signed with the default domain's keys.
func TestKeySelection(t *testing.T) {
	k := newKeys(t)
	plain := k.signer(t, "")
	msg := message("news@other.test")
	out, err := plain.Sign(msg)
	if err != nil || !bytes.Equal(out, msg) {
		t.Fatalf("mail from a domain without a key changed: %v", err)
	}
	out, err = plain.Sign(message("NEWS@EXAMPLE.Test."))
	if err != nil || len(signatures(out)) != 2 {
		t.Fatalf("upper-case From domain: %d signatures, %v", len(signatures(out)), err)
	}
	def := k.signer(t, "example.test")
	out, err = def.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := dkimtest.VerifyGo(out, k.recs)
	if err != nil || len(res) != 2 || res[0].Domain != "example.test" || !res[0].OK || !res[1].OK {
		t.Fatalf("default-domain signing: %+v %v", res, err)
	}
	if _, err := dkim.New(dkim.Options{DefaultDomain: "nokey.test", Keys: []dkim.Key{{Domain: "example.test", Selector: "s", Signer: k.ed}}}); err == nil {
		t.Error("a default domain without a key was accepted")
	}
}

// TestTransform: the submit.Transform signs, and refuses a message it
// cannot sign with a 451 that says nothing of the key.
func TestTransform(t *testing.T) {
	k := newKeys(t)
	s := k.signer(t, "")
	out, err := s.Transform(context.Background(), nil, message("a@example.test"))
	if err != nil || len(signatures(out)) != 2 {
		t.Fatalf("Transform: %d signatures, %v", len(signatures(out)), err)
	}
	_, err = s.Transform(context.Background(), nil, []byte("From: a@example.test"))
	var r *reply.Error
	if !errors.As(err, &r) || r.Code != 451 {
		t.Fatalf("malformed message: %v, want a 451 reply", err)
	}
	if strings.Contains(err.Error(), "PRIVATE") {
		t.Error("error mentions the key")
	}
}

func TestHeaderKeys(t *testing.T) {
	for _, tc := range []struct{ head, want string }{
		{"From: a@b\r\n", "From:From"},
		{"from: a@b\r\nTO: x\r\nto: y\r\nCc: z\r\nX-Other: 1\r\n", "From:From:To:To:Cc"},
		{"Subject: s\r\n", "From:Subject"},
		{"From: a@b\r\nFeedback-ID: 1:2\r\nList-Unsubscribe: <u>\r\n", "From:From:List-Unsubscribe:Feedback-ID"},
	} {
		if got := strings.Join(dkim.HeaderKeys([]byte(tc.head)), ":"); got != tc.want {
			t.Errorf("HeaderKeys(%q) = %s, want %s", tc.head, got, tc.want)
		}
	}
}

func TestPublicRecord(t *testing.T) {
	k := newKeys(t)
	for _, s := range []crypto.Signer{k.rsa, k.ed} {
		rec, err := dkim.PublicRecord(s.Public())
		if err != nil {
			t.Fatal(err)
		}
		pub, err := dkim.ParseRecord(rec)
		if err != nil || !dkim.SamePublic(pub, s) {
			t.Errorf("round trip of %q: %v", rec[:25], err)
		}
	}
	pub, _ := dkim.ParseRecord(k.recs["ed._domainkey.example.test"])
	if dkim.SamePublic(pub, k.rsa) {
		t.Error("Ed25519 record matched the RSA key")
	}
	for _, bad := range []string{"v=DKIM1; k=rsa; p=", "v=DKIM2; p=AAAA", "k=rsa", "k=ed25519; p=AAAA", "k=dsa; p=AAAA", "p=!!"} {
		if _, err := dkim.ParseRecord(bad); err == nil {
			t.Errorf("ParseRecord(%q) accepted", bad)
		}
	}
}
