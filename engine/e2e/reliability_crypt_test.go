package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestSpoolEncryptionAtRest: with [spool] encryption-key-file, nothing of a
// queued message (body, sender, recipient) is readable in the spool files;
// a wrong or missing key stops the daemon at start with an error naming the
// file; with the right key the message is delivered intact after a restart.
func TestSpoolEncryptionAtRest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeKey := func(name string) string {
		k := make([]byte, 32)
		rand.Read(k)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key, wrong := writeKey("spool.key"), writeKey("wrong.key")

	dns := startDNS(t)
	mxTo(dns, "crypt.test", "127.20.107.1") // no sink yet: the message waits in the spool
	cfg := testenv.Config{
		Listen:  listenAddr(t, "127.20.107.254"),
		DNS:     []string{dns.Addr()},
		Domains: map[string]testenv.Domain{"*": {RetryAfter: []string{"1s"}}},
		Extra:   "[spool]\nencryption-key-file = \"" + key + "\"\n",
	}
	d := testenv.StartDaemon(t, cfg.TOML())

	const marker = "Qx9SecretAtRest"
	rcpt := "user-" + strings.ToLower(marker) + "@crypt.test"
	msg := testenv.GenMessage(0, 2000, rcpt)
	msg = append(msg, []byte("confidential "+marker+"\r\n")...)
	if err := testenv.Inject(t, d.Addr(), "from-"+strings.ToLower(marker)+"@e2e.test", []string{rcpt}, msg); err != nil {
		t.Fatalf("inject: %v", err)
	}
	d.WaitAcct(t, testenv.OfType("t"), 1, 20*time.Second) // tried once: it sits in the spool
	d.Stop()
	for _, s := range []string{marker, strings.ToLower(marker)} {
		if p := findInDir(t, d.SpoolDir, s); p != "" {
			t.Fatalf("%q readable in the spool file %s", s, p)
		}
	}

	// A wrong key, and no key at all, stop the start and say why.
	conf, err := os.ReadFile(d.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		conf, want string
	}{
		"wrong key": {strings.Replace(string(conf), key, wrong, 1), wrong},
		"no key":    {strings.Replace(string(conf), "encryption-key-file = \""+key+"\"", "", 1), "encryption-key-file"},
	} {
		out, err := runServe(t, d.Dir, c.conf)
		if err == nil {
			t.Fatalf("%s: the daemon started", name)
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("%s: the error does not name %q:\n%s", name, c.want, out)
		}
		t.Logf("%s: %s", name, strings.TrimSpace(lastLine(out)))
	}

	sink := testenv.StartSink(t, "127.20.107.1:25", testenv.SinkOptions{})
	d.Restart()
	sink.WaitCount(t, 1, 30*time.Second)
	if got := sink.Messages()[0].Data; !bytes.Contains(got, []byte("confidential "+marker)) {
		t.Fatalf("delivered body lacks the original text:\n%s", got)
	}
}

// runServe runs `sluice serve` on conf in dir until it exits (at most 20 s)
// and returns its output.
func runServe(t *testing.T, dir, conf string) (string, error) {
	t.Helper()
	p := filepath.Join(dir, "alt.toml")
	if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.BuildSluice(t), "serve", "--config", p)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// findInDir returns a file under dir that contains s, or "".
func findInDir(t *testing.T, dir, s string) string {
	t.Helper()
	found := ""
	filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() || found != "" {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(s)) {
			found = p
		}
		return nil
	})
	return found
}
