package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/bad/*.toml")
	for _, name := range append(files, examplePath) {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		scanKeys(string(data)) // must not panic on any input
		c, err := parse("fuzz.toml", data)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.toml: ") {
					t.Fatalf("error line without the file name: %q", line)
				}
			}
			return
		}
		if len(c.Listeners) == 0 || c.Domains["*"] == nil {
			t.Fatalf("a config that loads has no listener or no domain \"*\": %+v", c)
		}
		c.DomainFor("example.test")
	})
}

func FuzzDuration(f *testing.F) {
	for _, s := range []string{"0", "30s", "10m", "1h30m", "4d12h", "2w", "1s500ms", "-5m", "5x", "99999999999999999999s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %v, negative", s, d)
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Fatalf("round trip %q → %q → %v, %v", s, d.String(), back, err)
		}
	})
}
