package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-mta/sluice/engine/testenv"
)

// TestPoolConfigErrors: `sluice check-config` refuses bad VMTA and pool
// configs with an error naming what is wrong, and accepts a good one;
// `sluice serve` refuses a bad one too.
func TestPoolConfigErrors(t *testing.T) {
	t.Parallel()
	base := testenv.Config{Listen: "127.20.44.1:2525", DNS: []string{"127.20.44.2:53"}}
	good := allVMTAs() + poolTOML("pool-a", "v1:1", "v2:1", "v3:2", "v4:4")
	cfg := func(extra string, sources ...testenv.Source) string {
		c := base
		c.Sources = sources
		c.Extra = extra
		return c.TOML()
	}
	relay := testenv.Source{CIDR: "127.0.0.0/8", Relay: true}

	goodCfg := cfg(good+
		"[[smtp-user]]\nname = \"u\"\npassword = \"p\"\ndefault-virtual-mta = \"v2\"\n\n"+
		"[[smtp-pattern-list.default]]\nreply = '/S3150/'\naction = \"disable-source-ip\"\nreenable-after = \"3s\"\n\n"+
		"[domain.\"*\"]\nsmtp-pattern-list = \"default\"\n",
		testenv.Source{CIDR: "127.0.0.0/8", Relay: true, ProcessXVirtualMTA: true, DefaultVirtualMTA: "pool-a"})
	if out, err := testenv.CheckConfig(t, goodCfg); err != nil {
		t.Fatalf("good config refused: %v\n%s\n--- config ---\n%s", err, out, goodCfg)
	}

	v := func(name, host string, extra ...string) string {
		var b strings.Builder
		b.WriteString("[[virtual-mta]]\nname = \"" + name + "\"\nsmtp-source-host = \"" + host + "\"\n")
		for _, l := range extra {
			b.WriteString(l + "\n")
		}
		b.WriteString("\n")
		return b.String()
	}
	cases := []struct {
		name string
		cfg  string
		// want: the output must hold every string of at least one entry
		// (case-insensitive).
		want [][]string
	}{
		{"unknown VMTA in a pool", cfg(allVMTAs() + poolTOML("pool-a", "v1:1", "nosuch:2")),
			[][]string{{"nosuch", "pool-a"}}},
		{"duplicate VMTA names", cfg(allVMTAs() + v("v1", "127.0.0.3 dup.example.test")),
			[][]string{{"\"v1\"", "virtual-mta"}}},
		{"duplicate pool names", cfg(allVMTAs() + poolTOML("pool-a", "v1") + poolTOML("pool-a", "v2")),
			[][]string{{"pool-a"}}},
		{"VMTA and pool with one name", cfg(allVMTAs() + poolTOML("v2", "v1")),
			[][]string{{"\"v2\"", "virtual-mta-pool"}}},
		{"weight 0", cfg(allVMTAs() + poolTOML("pool-a", "v1:0")),
			[][]string{{"v1:0"}, {"pool-a", "weight"}}},
		{"negative weight", cfg(allVMTAs() + poolTOML("pool-a", "v1:-1")),
			[][]string{{"v1:-1"}, {"pool-a", "weight"}}},
		{"fractional weight", cfg(allVMTAs() + poolTOML("pool-a", "v1:1.5")),
			[][]string{{"v1:1.5"}, {"pool-a", "weight"}}},
		{"weight not a number", cfg(allVMTAs() + poolTOML("pool-a", "v1:x")),
			[][]string{{"v1:x"}, {"pool-a", "weight"}}},
		{"source host not an IP", cfg(v("bad1", "not-an-ip bad1.example.test")),
			[][]string{{"smtp-source-host", "not-an-ip"}, {"smtp-source-host", "bad1"}}},
		{"source host without a name", cfg(v("bad2", "127.0.0.2")),
			[][]string{{"smtp-source-host", "bad2"}, {"smtp-source-host", "127.0.0.2"}}},
		{"source IP not on this host", cfg(v("far", "192.0.2.1 far.example.test")),
			[][]string{{"far", "192.0.2.1"}}},
		{"unknown default-virtual-mta of a source", cfg(allVMTAs(),
			testenv.Source{CIDR: "127.0.0.0/8", Relay: true, DefaultVirtualMTA: "nosuch"}),
			[][]string{{"default-virtual-mta", "nosuch"}}},
		{"unknown default-virtual-mta of a user", cfg(allVMTAs() +
			"[[smtp-user]]\nname = \"u\"\npassword = \"p\"\ndefault-virtual-mta = \"nosuch\"\n"),
			[][]string{{"default-virtual-mta", "nosuch"}}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			out, err := testenv.CheckConfig(t, c.cfg)
			if err == nil {
				t.Fatalf("check-config accepted it:\n%s\n--- config ---\n%s", out, c.cfg)
			}
			if _, ok := err.(*exec.ExitError); !ok {
				t.Fatalf("check-config did not run: %v", err)
			}
			t.Logf("check-config: %s", strings.TrimSpace(out))
			if !holdsOne(out, c.want) {
				t.Errorf("check-config's error does not name it (want all of one of %q):\n%s", c.want, out)
			}
		})
	}

	// serve refuses a bad config with the same clear error, before listening.
	t.Run("serve", func(t *testing.T) {
		bin := testenv.BuildSluice(t)
		dir := t.TempDir()
		path := filepath.Join(dir, "sluice.toml")
		text := "spool-dir = " + `"` + filepath.Join(dir, "spool") + `"` + "\nlog-dir = " + `"` + filepath.Join(dir, "log") + `"` + "\n" +
			cfg(allVMTAs()+poolTOML("pool-a", "v1:1", "nosuch:2"), relay)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "serve", "--config", path)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("serve kept running on a bad config:\n%s", out)
		}
		if err == nil {
			t.Fatalf("serve exited 0 on a bad config:\n%s", out)
		}
		if !holdsOne(string(out), [][]string{{"nosuch", "pool-a"}}) {
			t.Errorf("serve's error does not name the unknown VMTA and the pool:\n%s", out)
		}
	})
}

// holdsOne reports whether out holds every string of at least one entry of
// want, ignoring case.
func holdsOne(out string, want [][]string) bool {
	lo := strings.ToLower(out)
	for _, all := range want {
		ok := true
		for _, w := range all {
			if !strings.Contains(lo, strings.ToLower(w)) {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}
