package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// maxFileSize bounds what Load reads; real configs are a few kilobytes.
const maxFileSize = 4 << 20

// Error is one problem found in a configuration file. Load returns either one
// *Error or several joined with errors.Join, one per line of Error().
type Error struct {
	File string
	Key  string // e.g. `domain."*".max-smtp-out` or `source[1].cidr`; "" if none applies
	Line int    // 1-based; 0 when unknown (a key left to its default)
	Msg  string
}

// Error formats e as "FILE: KEY: MSG (line N)", leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

// Load reads, decodes, defaults and validates the TOML file at path.
//
// Decoding is strict: a key Config does not know is an error, and so is a
// value of the wrong type or one a field type rejects (durations, sizes,
// CIDRs, regexps); toml stops at the first such value. The cross-field
// checks that follow report every problem at once. Each message names the
// file, the key and, where the file sets it, the line.
//
// Relative paths (spool-dir, log-dir, tls-cert, tls-key) are kept as written;
// they resolve against the daemon's working directory, not the file's.
//
// Load lowercases the [domain] names (DomainFor matches them
// case-insensitively) and fills [domain."*"] with the built-in defaults for
// whatever it leaves unset.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // already names the path
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("file larger than %d bytes", maxFileSize)}
	}
	return parse(path, data)
}

// parse does Load's work on data read from file.
func parse(file string, data []byte) (*Config, error) {
	src := string(data)
	var c Config
	md, err := toml.Decode(src, &c)
	if err != nil {
		return nil, decodeError(file, src, err)
	}
	c.Path = file
	p := &problems{file: file, ix: scanKeys(src)}
	p.undecoded(md.Undecoded())
	c.setDefaults(p, &md)
	c.validate(p, &md)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	c.normalizeDomains()
	return &c, nil
}

// problems collects the errors of one file.
type problems struct {
	file string
	ix   *keyIndex
	errs []error
}

// add records a problem with key, an indexed path as renderPath writes it.
func (p *problems) add(key, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Key: key, Line: p.ix.lineOf(key), Msg: fmt.Sprintf(format, args...)})
}

// undecoded reports keys Config has no field for, once per place the file
// sets them; a key under an unknown table is covered by the table's report.
func (p *problems) undecoded(keys []toml.Key) {
	seen := map[string]bool{}
	for _, k := range keys {
		s := k.String()
		if seen[s] {
			continue
		}
		seen[s] = true
		if len(k) > 1 && seen[k[:len(k)-1].String()] {
			continue // under a reported table; seen[s] now covers its own children
		}
		at := p.ix.find(s)
		if len(at) == 0 {
			p.errs = append(p.errs, &Error{File: p.file, Msg: `unknown key "` + s + `"`})
			continue
		}
		for _, kl := range at {
			name := kl.path
			if kl.plain != s { // inside an inline table the scanner does not enter
				name = s
			}
			p.errs = append(p.errs, &Error{File: p.file, Line: kl.line, Msg: `unknown key "` + name + `"`})
		}
	}
}

// tomlErr is the text of toml's errors that are not a ParseError: type
// mismatches, as `toml: line 12 (last key "a.b"): incompatible types: …`.
var tomlErr = regexp.MustCompile(`(?s)^toml: line (\d+) \(last key ("(?:[^"\\]|\\.)*")\): (.*)$`)

// quotedInput finds the offending input our types put in their messages.
var quotedInput = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// decodeError turns toml's decoding error into an *Error. toml positions a
// key of an array of tables at its last element; when the file has the key
// several times, the element whose value explains the error is chosen.
func decodeError(file, src string, err error) error {
	e := &Error{File: file, Msg: err.Error()}
	var pick func(raw string) bool
	var pe toml.ParseError
	if errors.As(err, &pe) {
		e.Key, e.Line, e.Msg = pe.LastKey, pe.Position.Line, pe.Message
		if m := quotedInput.FindString(pe.Message); m != "" {
			if in, uerr := strconv.Unquote(m); uerr == nil {
				pick = func(raw string) bool {
					return raw == in || strings.Contains(raw, `"`+in+`"`) || strings.Contains(raw, `'`+in+`'`)
				}
			}
		}
	} else if m := tomlErr.FindStringSubmatch(err.Error()); m != nil {
		key, uerr := strconv.Unquote(m[2])
		if uerr != nil {
			return e
		}
		e.Key, e.Msg = key, m[3]
		e.Line, _ = strconv.Atoi(m[1])
		if _, after, ok := strings.Cut(m[3], "TOML value has type "); ok {
			typ, _, _ := strings.Cut(after, ";")
			pick = func(raw string) bool { return rawType(raw) == typ }
		}
	} else {
		return e
	}
	if e.Key == "" {
		return e
	}
	at := scanKeys(src).find(e.Key)
	if len(at) == 1 && at[0].plain == e.Key {
		e.Key, e.Line = at[0].path, at[0].line
		return e
	}
	for _, kl := range at {
		if kl.plain == e.Key && pick != nil && pick(kl.raw) {
			e.Key, e.Line = kl.path, kl.line
			break
		}
	}
	return e
}

// rawType guesses, from its text, the Go type toml decodes a value to, in
// the words of toml's "TOML value has type …" messages.
func rawType(raw string) string {
	if raw == "" {
		return ""
	}
	switch raw[0] {
	case '"', '\'':
		return "string"
	case '[':
		return "[]any"
	case '{':
		return "map[string]any"
	}
	switch {
	case raw == "true" || raw == "false":
		return "bool"
	case strings.ContainsAny(raw, ":") || len(raw) >= 10 && raw[4] == '-' && raw[7] == '-':
		return "time.Time"
	case strings.ContainsAny(raw, ".eE") || strings.HasSuffix(raw, "inf") || strings.HasSuffix(raw, "nan"):
		if !strings.HasPrefix(raw, "0x") {
			return "float64"
		}
	}
	return "int64"
}

// Built-in defaults.
const (
	defaultSpoolDir        = "var/spool"
	defaultLogDir          = "var/log"
	defaultMaxSessions     = 200
	defaultDNSTimeout      = Duration(5 * time.Second)
	defaultPort            = 25
	defaultConnectTimeout  = Duration(30 * time.Second)
	defaultCommandTimeout  = Duration(5 * time.Minute)  // RFC 5321 §4.5.3.2
	defaultDataTimeout     = Duration(10 * time.Minute) // RFC 5321 §4.5.3.2.6
	defaultShutdownTimeout = Duration(30 * time.Second)
)

// setDefaults fills what the file leaves unset. A timeout the file sets to
// "0" explicitly is kept, for validate to reject.
func (c *Config) setDefaults(p *problems, md *toml.MetaData) {
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			p.add("hostname", "not set, and the system hostname is unknown: %v", err)
		}
		c.Hostname = h
	}
	if c.SpoolDir == "" {
		c.SpoolDir = defaultSpoolDir
	}
	if c.LogDir == "" {
		c.LogDir = defaultLogDir
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	for i := range c.Sources {
		if c.Sources[i].AddReceivedHeader == nil {
			c.Sources[i].AddReceivedHeader = ptr(true) // RFC 5321 §4.4: trace information is a MUST
		}
	}
	for i := range c.Listeners {
		if c.Listeners[i].MaxSessions == 0 {
			c.Listeners[i].MaxSessions = defaultMaxSessions
		}
	}
	setDuration(md, &c.DNS.Timeout, defaultDNSTimeout, "dns", "timeout")
	if !md.IsDefined("delivery", "port") {
		c.Delivery.Port = defaultPort
	}
	setDuration(md, &c.Delivery.ConnectTimeout, defaultConnectTimeout, "delivery", "connect-timeout")
	setDuration(md, &c.Delivery.CommandTimeout, defaultCommandTimeout, "delivery", "command-timeout")
	setDuration(md, &c.Delivery.DataTimeout, defaultDataTimeout, "delivery", "data-timeout")
	if !md.IsDefined("acct", "records") {
		c.Acct.Records = []string{"d", "b", "t"}
	}
	setDuration(md, &c.ShutdownTimeout, defaultShutdownTimeout, "shutdown-timeout")
	if c.Domains == nil {
		c.Domains = map[string]*Domain{}
	}
	star := c.Domains["*"]
	if star == nil {
		star = &Domain{}
		c.Domains["*"] = star
	}
	if star.RetryAfter == nil && md.IsDefined("domain", "*", "retry-after") {
		star.RetryAfter = []Duration{} // set but empty: left for validate
	}
	b := builtinDomain()
	fillDomain(star, &Domain{
		MaxSMTPOut:          &b.MaxSMTPOut,
		MaxMsgPerConnection: &b.MaxMsgPerConnection,
		RetryAfter:          b.RetryAfter,
		BounceAfter:         &b.BounceAfter,
		Route:               &b.Route,
		UseStartTLS:         &b.UseStartTLS,
	})
}

func setDuration(md *toml.MetaData, d *Duration, def Duration, key ...string) {
	if *d == 0 && !md.IsDefined(key...) {
		*d = def
	}
}

// fillDomain sets the fields of d that are unset to those of from.
func fillDomain(d, from *Domain) {
	if d.MaxSMTPOut == nil {
		d.MaxSMTPOut = from.MaxSMTPOut
	}
	if d.MaxMsgPerConnection == nil {
		d.MaxMsgPerConnection = from.MaxMsgPerConnection
	}
	if d.RetryAfter == nil {
		d.RetryAfter = from.RetryAfter
	}
	if d.BounceAfter == nil {
		d.BounceAfter = from.BounceAfter
	}
	if d.Route == nil {
		d.Route = from.Route
	}
	if d.UseStartTLS == nil {
		d.UseStartTLS = from.UseStartTLS
	}
	if d.RequireStartTLS == nil {
		d.RequireStartTLS = from.RequireStartTLS
	}
	if d.MTASTS == nil {
		d.MTASTS = from.MTASTS
	}
	if d.SMTPPatternList == nil {
		d.SMTPPatternList = from.SMTPPatternList
	}
	if d.MaxMsgRate == nil {
		d.MaxMsgRate = from.MaxMsgRate
	}
	if d.MaxConnectRate == nil {
		d.MaxConnectRate = from.MaxConnectRate
	}
	if d.MaxRcptPerMessage == nil {
		d.MaxRcptPerMessage = from.MaxRcptPerMessage
	}
	if d.BackoffMaxMsgRate == nil {
		d.BackoffMaxMsgRate = from.BackoffMaxMsgRate
	}
	if d.BackoffMaxSMTPOut == nil {
		d.BackoffMaxSMTPOut = from.BackoffMaxSMTPOut
	}
	if d.BackoffRetryAfter == nil {
		d.BackoffRetryAfter = from.BackoffRetryAfter
	}
	if d.BackoffToNormalAfter == nil {
		d.BackoffToNormalAfter = from.BackoffToNormalAfter
	}
	if d.PerNode == nil {
		d.PerNode = from.PerNode
	}
}

// normalizeDomains rekeys Domains by lower-case name without a final dot.
// validate has already rejected names that would collide.
func (c *Config) normalizeDomains() {
	m := make(map[string]*Domain, len(c.Domains))
	for name, d := range c.Domains {
		if d == nil {
			d = &Domain{}
		}
		m[domainKey(name)] = d
	}
	c.Domains = m
	for i := range c.VirtualMTAs {
		v := &c.VirtualMTAs[i]
		vm := make(map[string]*Domain, len(v.Domains))
		for name, d := range v.Domains {
			if d == nil {
				d = &Domain{}
			}
			vm[domainKey(name)] = d
		}
		v.Domains = vm
	}
}

func domainKey(name string) string {
	if name == "*" {
		return name
	}
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

func ptr[T any](v T) *T { return &v }
