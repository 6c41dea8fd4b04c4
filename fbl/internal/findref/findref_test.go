package findref

import (
	"strings"
	"testing"

	"github.com/sluice-mta/sluice/fbl/internal/mailmsg"
	"github.com/sluice-mta/sluice/fbl/trace"
)

var (
	keys = trace.Keys{Current: []byte("findref-secret-0123456789")}
	ref  = trace.Ref{Rcpt: "a@example.com", JobID: "j", MsgID: "m"}
)

func find(t *testing.T, msg string, original bool) (*trace.Ref, bool) {
	t.Helper()
	root := mailmsg.Parse([]byte(msg))
	var orig *mailmsg.Part
	if original {
		root.Walk(func(p *mailmsg.Part) bool {
			if orig == nil && p.Message != nil {
				orig = p.Message
			}
			return orig == nil
		})
	}
	return Find(orig, root, "", keys)
}

func TestFind(t *testing.T) {
	good := trace.Encode(ref, keys)
	bad := trace.Encode(ref, trace.Keys{Current: []byte("some-other-secret-0123456789")})
	wrap := func(inner string) string {
		return "Content-Type: multipart/report; boundary=b\n\n--b\nContent-Type: message/rfc822\n\n" + inner + "\n--b--\n"
	}
	cases := []struct {
		name, msg     string
		found, forged bool
	}{
		{"in the original", wrap("X-Sluice-Ref: " + good + "\nSubject: x\n\nbody"), true, false},
		{"forged", wrap("X-Sluice-Ref: " + bad + "\n\nbody"), false, true},
		{"forged then good", wrap("X-Sluice-Ref: " + bad + "\nX-Sluice-Ref: " + good + "\n\nbody"), true, false},
		{"none", wrap("Subject: x\n\nbody"), false, false},
		{"quoted in text", "Subject: bounce\n\nOriginal message headers:\n> x-sluice-ref: " + good + "\n", true, false},
		{"in html with markup", "Content-Type: text/html\n\n<pre>X-Sluice-Ref: " + good + "<br>\n</pre>", true, false},
		{"report's own header is ignored", "X-Sluice-Ref: " + good + "\nSubject: x\n\nbody", false, false},
		{"empty value", wrap("X-Sluice-Ref:\n\nbody"), false, false},
	}
	for _, c := range cases {
		r, forged := find(t, c.msg, true)
		if (r != nil) != c.found || forged != c.forged {
			t.Errorf("%s: ref %+v, forged %v; want found %v, forged %v", c.name, r, forged, c.found, c.forged)
		}
		if r != nil && *r != ref {
			t.Errorf("%s: ref %+v, want %+v", c.name, r, ref)
		}
	}
}

func TestCandidatesAreCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("Subject: x\n\n")
	for i := 0; i < 10*maxCandidates; i++ {
		b.WriteString("X-Sluice-Ref: AAAA" + strings.Repeat("B", i%50) + "\n")
	}
	b.WriteString("X-Sluice-Ref: " + trace.Encode(ref, keys) + "\n") // past the cap
	if r, forged := find(t, b.String(), false); r != nil || !forged {
		t.Errorf("ref %+v, forged %v; want the cap to stop the search", r, forged)
	}
}
