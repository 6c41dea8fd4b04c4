package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckConfig(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"check-config", "--config", "../../config.toml.example"}, &out, &errb); code != 0 {
		t.Fatalf("example config: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "OK") {
		t.Errorf("stdout %q", out.String())
	}

	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("hostname = \"mta.test\"\n[[listener]]\naddress = \"127.0.0.1:2525\"\n[domain.\"*\"]\nbounce-after = \"4x\"\n"), 0o600)
	for _, cmd := range []string{"check-config", "serve"} {
		out.Reset()
		errb.Reset()
		if code := run([]string{cmd, "--config", bad}, &out, &errb); code == 0 {
			t.Errorf("%s with a bad duration exited 0", cmd)
		}
		msg := errb.String()
		for _, want := range []string{"bad.toml", "bounce-after", "line 5"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: error %q lacks %q", cmd, msg, want)
			}
		}
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, &out, &errb); code != 2 {
		t.Errorf("no args: exit %d", code)
	}
	if code := run([]string{"serve"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--config") {
		t.Errorf("serve without --config: exit %d, %q", code, errb.String())
	}
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
}
