package testenv

import (
	"fmt"
	"sort"
	"strings"
)

// Config generates a typical daemon configuration (see engine/config for the
// keys). Zero fields take the defaults shown in brackets; Listen is required.
// Render it with TOML and pass the text to StartDaemon.
type Config struct {
	Hostname        string   // ["sluice.test"]
	Listen          string   // listener "ip:port"
	MaxSessions     int      // [unset]
	MaxSessionsIP   int      // listener max-sessions-per-ip [unset: 20]
	ListenTimeout   string   // listener command-timeout [unset: 5m]
	TLSCert         string   // listener tls-cert file (see CA.WriteCert)
	TLSKey          string   // listener tls-key file
	ImplicitTLS     bool     // listener implicit-tls
	DNS             []string // resolvers "ip:port", e.g. a dnstest server
	DNSTimeout      string   // ["2s"]
	DeliveryPort    int      // [25]
	ConnectTimeout  string   // ["3s"]
	CommandTimeout  string   // ["30s"]
	DataTimeout     string   // ["30s"]
	SourceIP        string   // [unset: the kernel chooses]
	ShutdownTimeout string   // ["5s"]
	LogLevel        string   // ["debug"]
	AcctRecords     []string // [d b t r]
	AcctHeaders     []string // [acct] header-fields: header_* columns [none]
	Sources         []Source // [one: 127.0.0.0/8 with relaying]
	Users           []User
	Domains         map[string]Domain // "*" holds the defaults
	Extra           string            // raw TOML appended at the end (tables only)
}

// Source is one [[source]] block.
type Source struct {
	CIDR               string
	Relay              bool // always-allow-relaying
	PlainAuth          bool // allow-unencrypted-plain-auth
	ProcessXJob        bool
	ProcessXVirtualMTA bool
	DefaultVirtualMTA  string
	BounceDSN          bool
	MaxMessageSize     string // "64k"; "" leaves it unset
	AddReceivedHeader  *bool
}

// User is one [[smtp-user]] block; Password may be a bcrypt hash.
type User struct {
	Name, Password string
}

// Unlimited written as MaxMsgPerConnection renders 0, which the daemon reads
// as "no limit" (0 in the struct means "unset").
const Unlimited = -1

// Domain is one [domain."name"] block; zero fields are left unset.
type Domain struct {
	MaxSMTPOut          int
	MaxMsgPerConnection int // Unlimited renders 0
	RetryAfter          []string
	BounceAfter         string
	Route               string // "host:port" instead of MX
	UseStartTLS         *bool
	RequireStartTLS     *bool
	MTASTS              string // "on", "off", "testing-only"; "" leaves it unset
}

// Bool returns a pointer to b, for the optional boolean fields.
func Bool(b bool) *bool { return &b }

// TOML renders the configuration. spool-dir and log-dir are left out:
// StartDaemon adds them inside the daemon's directory.
func (c Config) TOML() string {
	var b strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&b, "%s = %s\n", k, tomlValue(v)) }
	kv("hostname", or(c.Hostname, "sluice.test"))
	kv("shutdown-timeout", or(c.ShutdownTimeout, "5s"))

	b.WriteString("\n[log]\n")
	kv("format", "json")
	kv("level", or(c.LogLevel, "debug"))

	b.WriteString("\n[[listener]]\n")
	kv("address", c.Listen)
	if c.MaxSessions > 0 {
		kv("max-sessions", c.MaxSessions)
	}
	if c.MaxSessionsIP > 0 {
		kv("max-sessions-per-ip", c.MaxSessionsIP)
	}
	if c.ListenTimeout != "" {
		kv("command-timeout", c.ListenTimeout)
	}
	if c.TLSCert != "" {
		kv("tls-cert", c.TLSCert)
		kv("tls-key", c.TLSKey)
	}
	if c.ImplicitTLS {
		kv("implicit-tls", true)
	}

	sources := c.Sources
	if sources == nil {
		sources = []Source{{CIDR: "127.0.0.0/8", Relay: true}}
	}
	for _, s := range sources {
		b.WriteString("\n[[source]]\n")
		kv("cidr", s.CIDR)
		boolKV := func(k string, v bool) {
			if v {
				kv(k, true)
			}
		}
		boolKV("always-allow-relaying", s.Relay)
		boolKV("allow-unencrypted-plain-auth", s.PlainAuth)
		boolKV("process-x-job", s.ProcessXJob)
		boolKV("process-x-virtual-mta", s.ProcessXVirtualMTA)
		boolKV("bounce-dsn", s.BounceDSN)
		if s.DefaultVirtualMTA != "" {
			kv("default-virtual-mta", s.DefaultVirtualMTA)
		}
		if s.MaxMessageSize != "" {
			kv("max-message-size", s.MaxMessageSize)
		}
		if s.AddReceivedHeader != nil {
			kv("add-received-header", *s.AddReceivedHeader)
		}
	}
	for _, u := range c.Users {
		b.WriteString("\n[[smtp-user]]\n")
		kv("name", u.Name)
		kv("password", u.Password)
	}

	b.WriteString("\n[dns]\n")
	if len(c.DNS) > 0 {
		kv("servers", c.DNS)
	}
	kv("timeout", or(c.DNSTimeout, "2s"))

	b.WriteString("\n[delivery]\n")
	port := c.DeliveryPort
	if port == 0 {
		port = 25
	}
	kv("port", port)
	kv("connect-timeout", or(c.ConnectTimeout, "3s"))
	kv("command-timeout", or(c.CommandTimeout, "30s"))
	kv("data-timeout", or(c.DataTimeout, "30s"))
	if c.SourceIP != "" {
		kv("source-ip", c.SourceIP)
	}

	b.WriteString("\n[acct]\n")
	recs := c.AcctRecords
	if recs == nil {
		recs = []string{"d", "b", "t", "r"}
	}
	kv("records", recs)
	if len(c.AcctHeaders) > 0 {
		kv("header-fields", c.AcctHeaders)
	}

	names := make([]string, 0, len(c.Domains))
	for n := range c.Domains {
		names = append(names, n)
	}
	sort.Strings(names) // "*" sorts first
	for _, n := range names {
		d := c.Domains[n]
		fmt.Fprintf(&b, "\n[domain.%s]\n", tomlValue(n))
		if d.MaxSMTPOut != 0 {
			kv("max-smtp-out", d.MaxSMTPOut)
		}
		switch {
		case d.MaxMsgPerConnection == Unlimited:
			kv("max-msg-per-connection", 0)
		case d.MaxMsgPerConnection != 0:
			kv("max-msg-per-connection", d.MaxMsgPerConnection)
		}
		if d.RetryAfter != nil {
			kv("retry-after", d.RetryAfter)
		}
		if d.BounceAfter != "" {
			kv("bounce-after", d.BounceAfter)
		}
		if d.Route != "" {
			kv("route", d.Route)
		}
		if d.UseStartTLS != nil {
			kv("use-starttls", *d.UseStartTLS)
		}
		if d.RequireStartTLS != nil {
			kv("require-starttls", *d.RequireStartTLS)
		}
		if d.MTASTS != "" {
			kv("mta-sts", d.MTASTS)
		}
	}
	if c.Extra != "" {
		b.WriteString("\n")
		b.WriteString(c.Extra)
		b.WriteString("\n")
	}
	return b.String()
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// tomlValue renders a string, bool, int or []string as TOML.
func tomlValue(v any) string {
	switch v := v.(type) {
	case string:
		return tomlString(v)
	case bool:
		return fmt.Sprint(v)
	case int:
		return fmt.Sprint(v)
	case []string:
		q := make([]string, len(v))
		for i, s := range v {
			q[i] = tomlString(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	panic(fmt.Sprintf("tomlValue: unsupported %T", v)) // programming error in this file
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
