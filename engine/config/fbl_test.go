package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fblBase = `
[[listener]]
address = "127.0.0.1:2525"
`

func TestFBLDefaults(t *testing.T) {
	c := mustLoad(t, fblBase+`
[fbl]
addresses = ["fbl@fbl.example.test"]
secret = "0123456789abcdef0123"

[bounce]
addresses = ["bounces@b.example.test"]

[unsubscribe]
listen = "127.0.0.1:0"
base-url = "http://127.0.0.1:8025"
mailto-domain = "unsub.example.test"
`)
	if string(c.FBL.SecretValue) != "0123456789abcdef0123" || c.FBL.Header != "X-Sluice-Ref" ||
		c.FBL.MaxRate != 0.003 || c.FBL.MinVolume != 1000 || c.FBL.Window.D().Hours() != 24 {
		t.Errorf("fbl defaults: %+v", c.FBL)
	}
	if strings.Contains(c.FBL.String(), "0123456789") || strings.Contains(c.Unsubscribe.String(), "0123456789") {
		t.Errorf("String() shows the secret: %s %s", c.FBL, c.Unsubscribe)
	}
	if got := strings.Join(c.Bounce.SuppressCategories, ","); got != "bad-mailbox,bad-domain,inactive-mailbox" {
		t.Errorf("suppress-categories = %s", got)
	}
	if !c.Unsubscribe.Enabled() || string(c.Unsubscribe.SecretValue) != "0123456789abcdef0123" {
		t.Errorf("unsubscribe should take the fbl secret: %v", c.Unsubscribe)
	}
	if got := strings.Join(c.Acct.Records, ","); got != "d,b,t,f,rb" {
		t.Errorf("acct records = %s, want f and rb added", got)
	}
}

func TestFBLSecretFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "key")
	os.WriteFile(f, []byte("abcdefghijklmnopqrstuvwxyz\nignored\n"), 0o600)
	c := mustLoad(t, fblBase+"[fbl]\nsecret-file = \""+f+"\"\n")
	if string(c.FBL.SecretValue) != "abcdefghijklmnopqrstuvwxyz" {
		t.Errorf("secret from file = %q", c.FBL.SecretValue)
	}
}

func TestFBLBad(t *testing.T) {
	cases := []struct{ body, want string }{
		{"[fbl]\naddresses = [\"fbl@x.test\"]\n", "fbl.addresses: needs fbl.secret"},
		{"[fbl]\nsecret = \"short\"\n", "fbl.secret: the secret must be at least 16 bytes long (line"},
		{"[fbl]\nsecret = \"0123456789abcdef\"\nsecret-file = \"/x\"\n", "fbl.secret-file: set secret or secret-file, not both"},
		{"[fbl]\nsecret = \"0123456789abcdef\"\nmax-complaint-rate = 0.0\n", "fbl.max-complaint-rate: must be above 0"},
		{"[fbl]\nsecret = \"0123456789abcdef\"\nfeedback-id = \"{job}:{vmta}\"\n", "fbl.feedback-id: want"},
		{"[fbl]\nsecret = \"0123456789abcdef\"\naddresses = [\"nobody\"]\n", "fbl.addresses[0]: \"nobody\" is not an address"},
		{"[bounce]\nsuppress-categories = [\"bad-mood\"]\n", "bounce.suppress-categories[0]: \"bad-mood\" is not a bounce category"},
		{"[unsubscribe]\nlisten = \"127.0.0.1:1\"\nbase-url = \"http://unsub.example.test\"\nsecret = \"0123456789abcdef\"\n", "unsubscribe.base-url: \"http://unsub.example.test\": one-click unsubscribe needs https"},
		{"[unsubscribe]\nbase-url = \"https://u.example.test\"\n", "unsubscribe.secret: required"},
		{"[[source]]\ncidr = \"10.0.0.0/8\"\non-suppressed = \"shrug\"\n", "source[0].on-suppressed: \"shrug\" is not one of reject, accept-and-drop"},
	}
	for _, c := range cases {
		path := writeConfig(t, fblBase+c.body)
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.body, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "0123456789abcdef") {
			t.Errorf("%q: the error shows the secret: %v", c.body, err)
		}
	}
}
