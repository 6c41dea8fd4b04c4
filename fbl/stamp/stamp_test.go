package stamp

import (
	"context"
	"strings"
	"testing"

	"github.com/sluice-mta/sluice/engine/queue"
	"github.com/sluice-mta/sluice/engine/spool"
	"github.com/sluice-mta/sluice/fbl/trace"
	"github.com/sluice-mta/sluice/fbl/unsub"
)

var key = []byte("0123456789abcdef0123")

func msg(rcpts ...string) *spool.Message {
	m := &spool.Message{ID: "M1", Env: spool.Envelope{JobID: "spring", SourceIP: "10.0.0.1", AuthUser: "acme", VMTA: "pool1"}}
	for _, r := range rcpts {
		m.Rcpts = append(m.Rcpts, spool.Rcpt{Addr: r})
	}
	return m
}

func TestTransform(t *testing.T) {
	st := New(Options{Keys: trace.Keys{Current: key}, FeedbackID: "{job}:{user}:{vmta}:sluice",
		UnsubKey: key, BaseURL: "https://u.example.test", MailtoDomain: "unsub.example.test"})
	body := "Received: from x\r\nX-Sluice-Ref: forged-by-injector\r\nSubject: hi\r\n\r\nbody\r\nX-Sluice-Ref: in the body stays\r\n"
	out, err := st.Transform(context.Background(), msg("a@b.test"), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	head, rest, _ := strings.Cut(string(out), "\r\n\r\n")
	if rest != "body\r\nX-Sluice-Ref: in the body stays\r\n" {
		t.Errorf("body changed: %q", rest)
	}
	if strings.Contains(head, "forged-by-injector") {
		t.Errorf("the injector's trace header was kept:\n%s", head)
	}
	if !strings.HasPrefix(head, "Received: from x\r\nSubject: hi\r\n") {
		t.Errorf("fields added above the existing ones:\n%s", head)
	}
	if !strings.Contains(head, "\r\nFeedback-ID: spring:acme:pool1:sluice") {
		t.Errorf("no Feedback-ID:\n%s", head)
	}
	if !strings.Contains(head, "\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click") {
		t.Errorf("no List-Unsubscribe-Post:\n%s", head)
	}
	i := strings.Index(head, "List-Unsubscribe: <https://u.example.test/u/")
	if i < 0 {
		t.Fatalf("no List-Unsubscribe:\n%s", head)
	}
	tok := head[i+len("List-Unsubscribe: <https://u.example.test/u/"):]
	tok = tok[:strings.IndexByte(tok, '>')]
	got, err := unsub.ParseToken(tok, trace.Keys{Current: key})
	if err != nil || got != (unsub.Token{Rcpt: "a@b.test", Scope: "acme", Job: "spring"}) {
		t.Errorf("token = %+v, %v", got, err)
	}
	if !strings.Contains(head, ">,\r\n <mailto:unsub+"+tok+"@unsub.example.test>") {
		t.Errorf("mailto form missing or unfolded:\n%s", head)
	}
}

func TestTransformKeepsInjectorHeaders(t *testing.T) {
	st := New(Options{Keys: trace.Keys{Current: key}, FeedbackID: "x:sluice", UnsubKey: key, BaseURL: "https://u.example.test"})
	body := "Feedback-ID: mine\r\nlist-unsubscribe: <mailto:me@x.test>\r\n\r\nbody\r\n"
	out, _ := st.Transform(context.Background(), msg("a@b.test"), []byte(body))
	if string(out) != body {
		t.Errorf("injector's headers not respected:\n%s", out)
	}
	// Several recipients: one token cannot name them all.
	out, _ = st.Transform(context.Background(), msg("a@b.test", "c@d.test"), []byte("Subject: x\r\n\r\nb\r\n"))
	if strings.Contains(string(out), "List-Unsubscribe") || !strings.Contains(string(out), "Feedback-ID: x:sluice") {
		t.Errorf("multi-recipient message:\n%s", out)
	}
	// Header only, no body.
	out, _ = st.Transform(context.Background(), msg("a@b.test"), []byte("Subject: x\r\n"))
	if !strings.HasPrefix(string(out), "Subject: x\r\nFeedback-ID: x:sluice\r\n") {
		t.Errorf("header-only message:\n%q", out)
	}
}

func TestFeedbackID(t *testing.T) {
	cases := []struct {
		tmpl string
		env  spool.Envelope
		want string
	}{
		{"{job}:{vmta}:sluice", spool.Envelope{JobID: "j", VMTA: "v"}, "j:v:sluice"},
		{"{job}:{user}:sluice", spool.Envelope{VMTA: "v"}, "sluice"},
		{"c-{job}:sluice", spool.Envelope{JobID: "a:b c"}, "c-a-b-c:sluice"},
		{"{source}:s", spool.Envelope{SourceIP: "::1"}, "--1:s"},
	}
	for _, c := range cases {
		if got := feedbackID(c.tmpl, &c.env); got != c.want {
			t.Errorf("feedbackID(%q, %+v) = %q, want %q", c.tmpl, c.env, got, c.want)
		}
	}
}

func TestDecorate(t *testing.T) {
	keys := trace.Keys{Current: key}
	st := New(Options{Keys: keys})
	env := &spool.Envelope{JobID: "spring", SourceIP: "10.0.0.1"}
	h := string(st.Decorate(queue.Transaction{MsgID: "M1", Env: env, Rcpts: []string{"a@b.test"}, VMTA: "v1"}))
	name, v, ok := strings.Cut(strings.TrimSuffix(h, "\r\n"), ": ")
	if !ok || name != "X-Sluice-Ref" || !strings.HasSuffix(h, "\r\n") || len(v) > 120 {
		t.Fatalf("Decorate = %q", h)
	}
	ref, err := trace.Decode(v, keys)
	if err != nil || ref != (trace.Ref{Rcpt: "a@b.test", JobID: "spring", VMTA: "v1", Source: "10.0.0.1", MsgID: "M1"}) {
		t.Errorf("decoded %+v, %v", ref, err)
	}
	h = string(st.Decorate(queue.Transaction{MsgID: "M1", Env: env, Rcpts: []string{"a@b.test", "c@b.test"}, VMTA: "v1"}))
	ref, _ = trace.Decode(strings.TrimSpace(strings.TrimPrefix(h, "X-Sluice-Ref:")), keys)
	if ref.Rcpt != "" || ref.MsgID != "M1" {
		t.Errorf("multi-recipient ref = %+v", ref)
	}
	if New(Options{}).Decorate(queue.Transaction{Env: env}) != nil {
		t.Error("Decorate without a key added a header")
	}
}
