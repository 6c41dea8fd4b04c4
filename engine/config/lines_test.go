package config

import "testing"

func TestScanKeys(t *testing.T) {
	src := `# comment = 1
hostname = "h" # trailing
[log]
format = 'console'
[[listener]]
address = "a:1"
[[listener]]
  address   =   "a:2"
tls-cert = """
key = "not a key"
"""
[listener.inner]
x = 1
[domain."*"]
retry-after = [
  "1m", # a comment with ] and [
  "5m",
]
[domain."a.test".sub]
dotted.key = { a = 1, b = [2, 3] }
'lit.key' = "v"
"q\"k" = 2
[[listener]]
address = "a:3"
`
	ix := scanKeys(src)
	cases := []struct {
		path string
		line int
	}{
		{"hostname", 2},
		{"log", 3},
		{"log.format", 4},
		{"listener[0]", 5},
		{"listener[0].address", 6},
		{"listener[1].address", 8},
		{"listener[1].tls-cert", 9},
		{"listener[1].inner.x", 13},
		{`domain."*".retry-after`, 15},
		{`domain."*".retry-after[1]`, 15}, // falls back to the key
		{`domain."a.test".sub`, 19},
		{`domain."a.test".sub.dotted`, 20},
		{`domain."a.test".sub.dotted.key`, 20},
		{`domain."a.test".sub.dotted.key.a`, 20}, // inside an inline table
		{`domain."a.test".sub."lit.key"`, 21},
		{`domain."a.test".sub."q\"k"`, 22},
		{"listener[2].address", 24},
		{"key", 0},
		{"nothing.here", 0},
	}
	for _, c := range cases {
		if got := ix.lineOf(c.path); got != c.line {
			t.Errorf("lineOf(%s) = %d, want %d", c.path, got, c.line)
		}
	}
	at := ix.find("listener.address")
	if len(at) != 3 || at[2].raw != `"a:3"` || at[1].path != "listener[1].address" {
		t.Errorf("find(listener.address) = %+v", at)
	}
	if at := ix.find("hostname"); len(at) != 1 || at[0].raw != `"h"` {
		t.Errorf("find(hostname) = %+v", at)
	}
}

func TestParentPath(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a.b", "a"},
		{"a[1]", "a"},
		{"a[1].b", "a[1]"},
		{`domain."a.b".c`, `domain."a.b"`},
		{`domain."a.b"`, "domain"},
		{`"x\".y"`, ""},
		{"a", ""},
	}
	for _, c := range cases {
		if got := parentPath(c.in); got != c.want {
			t.Errorf("parentPath(%s) = %q, want %q", c.in, got, c.want)
		}
	}
}
