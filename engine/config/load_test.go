package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

const examplePath = "../../config.toml.example"

// writeConfig writes body to NAME.toml in a temporary directory.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustLoad(t *testing.T, body string) *Config {
	t.Helper()
	c, err := Load(writeConfig(t, body))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func TestLoadExample(t *testing.T) {
	c, err := Load(examplePath)
	if err != nil {
		t.Fatalf("Load(%s): %v", examplePath, err)
	}
	if c.Path != examplePath || c.Hostname != "mta.example.test" || c.Log.Format != "console" {
		t.Errorf("Path %q, Hostname %q, Log.Format %q", c.Path, c.Hostname, c.Log.Format)
	}
	if len(c.Listeners) != 1 || c.Listeners[0].Address != "127.0.0.1:2525" || c.Listeners[0].MaxSessions != 200 {
		t.Errorf("Listeners = %+v", c.Listeners)
	}
	if len(c.Sources) != 1 || c.Sources[0].CIDR.String() != "127.0.0.1/32" ||
		!c.Sources[0].AlwaysAllowRelaying || !c.Sources[0].ProcessXJob || !c.Sources[0].ProcessXVirtualMTA {
		t.Errorf("Sources = %+v", c.Sources)
	}
	if c.DNS.Servers == nil || len(c.DNS.Servers) != 0 {
		t.Errorf("DNS.Servers = %#v, want empty", c.DNS.Servers)
	}
	star := c.DomainFor("other.test")
	want := builtinDomain()
	want.BounceAfter = Duration(108 * time.Hour)
	want.RetryAfter = []Duration{Duration(time.Minute), Duration(5 * time.Minute), Duration(15 * time.Minute), Duration(time.Hour)}
	want.SMTPPatternList = "default"
	if !reflect.DeepEqual(star, want) {
		t.Errorf("DomainFor(other.test) = %+v, want %+v", star, want)
	}
	ex := c.DomainFor("EXAMPLE.test")
	if ex.MaxSMTPOut != 2 || len(ex.RetryAfter) != 2 || ex.MaxMsgPerConnection != 100 {
		t.Errorf("DomainFor(example.test) = %+v", ex)
	}
	if len(c.BounceRules) != 1 || !c.BounceRules[0].Pattern.MatchString("552 5.2.2 Mailbox is FULL") {
		t.Errorf("BounceRules = %+v", c.BounceRules)
	}
}

// TestExampleDocumentsEveryKey checks that each key Config knows appears in
// the example, set or commented out.
func TestExampleDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, key := range tomlKeys(reflect.TypeFor[Config](), "") {
		last := key[strings.LastIndex(key, ".")+1:]
		re := regexp.MustCompile(`(?m)^(# )?` + regexp.QuoteMeta(last) + ` = `)
		if !re.MatchString(text) && !strings.Contains(text, "["+key+"]") && !strings.Contains(text, "[["+key+"]]") && !strings.Contains(text, "["+key+".") {
			t.Errorf("%s does not document %s", examplePath, key)
		}
	}
}

// tomlKeys lists the dotted toml keys of the struct type t.
func tomlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" && f.Anonymous && f.Type.Kind() == reflect.Struct {
			keys = append(keys, tomlKeys(f.Type, prefix)...) // embedded: its keys are at this level
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		key := prefix + name
		keys = append(keys, key)
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice || ft.Kind() == reflect.Map {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() == t.PkgPath() && !slices.Contains([]string{"CIDR", "Regexp"}, ft.Name()) {
			keys = append(keys, tomlKeys(ft, key+".")...)
		}
	}
	return keys
}

func TestDefaults(t *testing.T) {
	c := mustLoad(t, "[[listener]]\naddress = \"127.0.0.1:0\"\n")
	host, _ := os.Hostname()
	if c.Hostname != host {
		t.Errorf("Hostname = %q, want %q", c.Hostname, host)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"spool-dir", c.SpoolDir, "var/spool"},
		{"log-dir", c.LogDir, "var/log"},
		{"log.format", c.Log.Format, "json"},
		{"log.level", c.Log.Level, "info"},
		{"listener.max-sessions", c.Listeners[0].MaxSessions, 200},
		{"dns.timeout", c.DNS.Timeout.D(), 5 * time.Second},
		{"delivery.port", c.Delivery.Port, 25},
		{"delivery.connect-timeout", c.Delivery.ConnectTimeout.D(), 30 * time.Second},
		{"delivery.command-timeout", c.Delivery.CommandTimeout.D(), 5 * time.Minute},
		{"delivery.data-timeout", c.Delivery.DataTimeout.D(), 10 * time.Minute},
		{"acct.records", c.Acct.Records, []string{"d", "b", "t"}},
		{"shutdown-timeout", c.ShutdownTimeout.D(), 30 * time.Second},
		{"domain.*", c.DomainFor("x.test"), builtinDomain()},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	// Load fills [domain."*"] itself, so components may read it directly.
	star := c.Domains["*"]
	if star == nil || star.MaxSMTPOut == nil || *star.MaxSMTPOut != 20 || star.Route == nil || star.UseStartTLS == nil || !*star.UseStartTLS {
		t.Errorf(`Domains["*"] = %+v`, star)
	}
}

func TestExplicitValuesKept(t *testing.T) {
	c := mustLoad(t, `
shutdown-timeout = "0"
[[listener]]
address = ":2525"
[acct]
records = []
[dns]
servers = ["127.0.0.1", "127.0.0.2:5353", "::1"]
`)
	if c.ShutdownTimeout != 0 {
		t.Errorf("ShutdownTimeout = %v, want 0 as set", c.ShutdownTimeout)
	}
	if len(c.Acct.Records) != 0 {
		t.Errorf("Acct.Records = %v, want none as set", c.Acct.Records)
	}
	if want := []string{"127.0.0.1:53", "127.0.0.2:5353", "[::1]:53"}; !slices.Equal(c.DNS.Servers, want) {
		t.Errorf("DNS.Servers = %v, want %v", c.DNS.Servers, want)
	}
}

// TestBad loads each testdata/bad/NAME.toml; every line of
// NAME.expected-error must occur in the error (or match it, written /re/),
// and every line of the error must start with the file name.
func TestBad(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/bad/*.toml: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".toml"), func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".toml") + ".expected-error")
			if err != nil {
				t.Fatal(err)
			}
			c, err := Load(f)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", c)
			}
			got := err.Error()
			for _, w := range strings.Split(strings.TrimSpace(string(want)), "\n") {
				if len(w) > 1 && w[0] == '/' && w[len(w)-1] == '/' {
					if !regexp.MustCompile(w[1 : len(w)-1]).MatchString(got) {
						t.Errorf("error does not match %s:\n%s", w, got)
					}
				} else if !strings.Contains(got, w) {
					t.Errorf("error does not contain %q:\n%s", w, got)
				}
			}
			for _, line := range strings.Split(got, "\n") {
				if !strings.HasPrefix(line, f+": ") {
					t.Errorf("error line does not start with %q: %s", f+": ", line)
				}
			}
			var e *Error
			if !errors.As(err, &e) || e.File != f {
				t.Errorf("error is not an *Error for %s: %#v", f, err)
			}
		})
	}
}

func TestAllErrorsReported(t *testing.T) {
	_, err := Load("testdata/bad/many.toml")
	if n := strings.Count(err.Error(), "\n") + 1; n < 10 {
		t.Errorf("got %d errors, want at least 10:\n%v", n, err)
	}
}

func TestUnknownKeysEveryPlace(t *testing.T) {
	_, err := Load(writeConfig(t, `
[[listener]]
address = "127.0.0.1:1"
bogus = 1
[[listener]]
address = "127.0.0.1:2"
bogus = 2
[nope]
a = 1
[nope.deeper]
b = 2
`))
	got := err.Error()
	for _, w := range []string{`unknown key "listener[0].bogus" (line 4)`, `unknown key "listener[1].bogus" (line 7)`, `unknown key "nope" (line 8)`} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
	if strings.Contains(got, "nope.") {
		t.Errorf("keys under an unknown table reported separately:\n%s", got)
	}
	if n := strings.Count(got, "\n") + 1; n != 3 {
		t.Errorf("got %d errors, want 3:\n%s", n, got)
	}
}

func TestDomainNames(t *testing.T) {
	c := mustLoad(t, `
[[listener]]
address = "127.0.0.1:0"
[domain."Mixed.Test."]
max-smtp-out = 3
`)
	if _, ok := c.Domains["mixed.test"]; !ok {
		t.Errorf("Domains not normalized: %v", c.Domains)
	}
	_, err := Load(writeConfig(t, `
[[listener]]
address = "127.0.0.1:0"
[domain."a.test"]
[domain."A.TEST"]
`))
	if err == nil || !strings.Contains(err.Error(), `domain."A.TEST": same domain as domain."a.test" (line 5)`) {
		t.Errorf("duplicate domains: %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.toml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "none.toml") {
		t.Errorf("Load(missing) = %v", err)
	}
}

func TestLoadTooLarge(t *testing.T) {
	path := writeConfig(t, strings.Repeat("# padding\n", maxFileSize/10+1))
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(huge) = %v", err)
	}
}

func TestErrorFormat(t *testing.T) {
	cases := []struct {
		e    Error
		want string
	}{
		{Error{File: "c.toml", Key: "a.b", Line: 3, Msg: "bad"}, "c.toml: a.b: bad (line 3)"},
		{Error{File: "c.toml", Key: "a.b", Msg: "bad"}, "c.toml: a.b: bad"},
		{Error{File: "c.toml", Line: 7, Msg: "bad"}, "c.toml: bad (line 7)"},
	}
	for _, c := range cases {
		if got := c.e.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
}

func TestRawType(t *testing.T) {
	cases := []struct{ raw, want string }{
		{`"x"`, "string"}, {`'x'`, "string"}, {`"""x"""`, "string"},
		{`[1, 2]`, "[]any"}, {`{a = 1}`, "map[string]any"},
		{`true`, "bool"}, {`false`, "bool"},
		{`12`, "int64"}, {`-3`, "int64"}, {`0x1F`, "int64"}, {`1_000`, "int64"},
		{`1.5`, "float64"}, {`1e3`, "float64"}, {`inf`, "float64"}, {`-nan`, "float64"},
		{`1979-05-27`, "time.Time"}, {`07:32:00`, "time.Time"}, {`1979-05-27T07:32:00Z`, "time.Time"},
		{``, ""},
	}
	for _, c := range cases {
		if got := rawType(c.raw); got != c.want {
			t.Errorf("rawType(%q) = %q, want %q", c.raw, got, c.want)
		}
	}
}

// TestEncodeRoundTrip checks that a loaded Config encodes back to TOML that
// loads to the same Config, so the field types' MarshalText agree with their
// UnmarshalText.
func TestEncodeRoundTrip(t *testing.T) {
	c, err := Load(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var first, second bytes.Buffer
	if err := toml.NewEncoder(&first).Encode(c); err != nil {
		t.Fatal(err)
	}
	c2, err := parse("encoded.toml", first.Bytes())
	if err != nil {
		t.Fatalf("encoded config does not load: %v\n%s", err, first.String())
	}
	if err := toml.NewEncoder(&second).Encode(c2); err != nil {
		t.Fatal(err)
	}
	if first.String() != second.String() {
		t.Errorf("round trip differs:\n%s\n---\n%s", first.String(), second.String())
	}
}
