// Package config turns a TOML file into a validated, typed Config. Keys use
// PowerMTA's directive names, dashed. Load rejects unknown keys, wrong types,
// bad durations, sizes, CIDRs and patterns, naming the file, the key and the
// line, and reports every failed cross-field check at once. It fills
// defaults, so components read settled values; each receives its own
// sub-struct. Relative paths are kept as written and resolve against the
// working directory. A Config is not modified after Load and may be read
// concurrently.
package config

import "net/netip"

// Config is the whole daemon configuration.
type Config struct {
	Path string `toml:"-"` // the file it was loaded from

	Hostname string `toml:"hostname"`  // banner and default EHLO name
	SpoolDir string `toml:"spool-dir"` // pebble spool directory
	LogDir   string `toml:"log-dir"`   // acct-YYYY-MM-DD.csv is written here

	Log         Log                `toml:"log"`
	Listeners   []Listener         `toml:"listener"`
	Sources     []Source           `toml:"source"`
	SMTPUsers   []SMTPUser         `toml:"smtp-user"`
	DNS         DNS                `toml:"dns"`
	Delivery    Delivery           `toml:"delivery"`
	Acct        Acct               `toml:"acct"`
	BounceRules []BounceRule       `toml:"bounce-rule"`
	Domains     map[string]*Domain `toml:"domain"` // "*" holds the defaults

	MXRollups    map[string]*MXRollup     `toml:"mx-rollup"`
	Redis        Redis                    `toml:"redis"`
	VirtualMTAs  []VirtualMTA             `toml:"virtual-mta"`
	Pools        []VirtualMTAPool         `toml:"virtual-mta-pool"`
	PatternLists map[string][]PatternRule `toml:"smtp-pattern-list"`
	Admin        *Admin                   `toml:"admin"`       // nil: no admin API
	AcctFile     AcctFile                 `toml:"acct-file"`   // rotation and retention of the acct files
	Webhook      Webhook                  `toml:"webhook"`     // optional event webhook
	FBL          FBL                      `toml:"fbl"`         // feedback loops, trace header, complaint guard
	Bounce       Bounce                   `toml:"bounce"`      // asynchronous bounces (return-path addresses)
	Unsubscribe  Unsubscribe              `toml:"unsubscribe"` // RFC 8058 one-click unsubscribe
	TLS          TLS                      `toml:"tls"`         // outbound TLS roots, MTA-STS fetching (tls.go)
	Spool        Spool                    `toml:"spool"`       // encryption at rest (reliability.go)
	Inject       Inject                   `toml:"inject"`      // HTTP campaign injection token (inject.go)

	Authentication // [[dkim-key]], [dkim], [doctor]: see dkim.go

	ShutdownTimeout Duration `toml:"shutdown-timeout"` // [30s] time to finish transactions in flight
}

// Log configures operational logging (zap).
type Log struct {
	Format string `toml:"format"` // "json" [default] or "console"
	Level  string `toml:"level"`  // "debug", "info" [default], "warn", "error"
}

// Listener is one SMTP injection endpoint.
type Listener struct {
	Address     string `toml:"address"`      // "host:port"
	MaxSessions int    `toml:"max-sessions"` // [200] concurrent sessions; more get 421 4.3.2
	TLSCert     string `toml:"tls-cert"`     // PEM certificate file; with tls-key enables STARTTLS
	TLSKey      string `toml:"tls-key"`      // PEM key file
	ImplicitTLS bool   `toml:"implicit-tls"` // TLS from the first byte (port 465 style, RFC 8314 §3.3), no STARTTLS

	// Hostile-client limits; reliability.go fills their defaults.
	MaxSessionsPerIP int      `toml:"max-sessions-per-ip"` // [20] concurrent sessions from one client IP
	CommandTimeout   Duration `toml:"command-timeout"`     // [5m] for each line from the client (RFC 5321 §4.5.3.2.7)
}

// Source decides what a connecting client may do; matched by CIDR, the most
// specific prefix wins. A client matching no source is treated as the
// implicit source 0.0.0.0/0 with every option off.
type Source struct {
	CIDR                      CIDR   `toml:"cidr"`
	AlwaysAllowRelaying       bool   `toml:"always-allow-relaying"`
	ProcessXJob               bool   `toml:"process-x-job"`
	ProcessXVirtualMTA        bool   `toml:"process-x-virtual-mta"`
	DefaultVirtualMTA         string `toml:"default-virtual-mta"`
	AllowUnencryptedPlainAuth bool   `toml:"allow-unencrypted-plain-auth"`
	BounceDSN                 bool   `toml:"bounce-dsn"`
	MaxMessageSize            Size   `toml:"max-message-size"`    // [0 = delivery default 50M]
	AddReceivedHeader         *bool  `toml:"add-received-header"` // [true]
	OnSuppressed              string `toml:"on-suppressed"`       // ["reject"] or "accept-and-drop" for suppressed recipients
}

// SMTPUser is an account that may relay after AUTH PLAIN or LOGIN.
type SMTPUser struct {
	Name     string `toml:"name"`
	Password string `toml:"password"` // plain text, or a bcrypt hash ($2a$/$2b$/$2y$)

	DefaultVirtualMTA string `toml:"default-virtual-mta"` // VMTA or pool for this user's mail
}

// DNS configures the MX resolver.
type DNS struct {
	Servers []string `toml:"servers"` // "ip:port"; empty: /etc/resolv.conf
	Timeout Duration `toml:"timeout"` // [5s] per query
}

// Delivery holds settings of the outbound SMTP client.
type Delivery struct {
	Port           int      `toml:"port"`            // [25] remote SMTP port
	ConnectTimeout Duration `toml:"connect-timeout"` // [30s]
	CommandTimeout Duration `toml:"command-timeout"` // [5m] RFC 5321 §4.5.3.2
	DataTimeout    Duration `toml:"data-timeout"`    // [10m] RFC 5321 §4.5.3.2.6
	SourceIP       string   `toml:"source-ip"`       // default VMTA's source address; "" lets the kernel choose
}

// Acct configures the accounting CSV.
type Acct struct {
	Records []string `toml:"records"` // record types to write [d, b, t]; "r" adds receptions
	// HeaderFields are message header fields copied into each record as
	// header_<Name> columns after vmtaPool [none] (acct_headers.go)
	HeaderFields []string `toml:"header-fields"`
}

// BounceRule is an operator-added classification rule, tried before the
// built-in ones, in file order.
type BounceRule struct {
	Pattern  Regexp `toml:"pattern"`  // matched case-insensitively against "code status text"
	Category string `toml:"category"` // one of the PowerMTA bounce categories
}

// Domain holds per-destination settings. In [domain."*"] unset fields take
// the built-in defaults; in [domain."name"] unset fields inherit "*".
type Domain struct {
	MaxSMTPOut          *int        `toml:"max-smtp-out"`           // [20]
	MaxMsgPerConnection *int        `toml:"max-msg-per-connection"` // [100]; 0 = unlimited
	RetryAfter          []Duration  `toml:"retry-after"`            // [10m]; the last repeats
	BounceAfter         *Duration   `toml:"bounce-after"`           // [4d12h]
	Route               *string     `toml:"route"`                  // "host:port" instead of MX
	UseStartTLS         *bool       `toml:"use-starttls"`           // [true]
	RequireStartTLS     *bool       `toml:"require-starttls"`       // [false] no TLS, no delivery: defer
	MTASTS              *MTASTSMode `toml:"mta-sts"`                // ["off"] RFC 8461 policy use: on, off, testing-only
	SMTPPatternList     *string     `toml:"smtp-pattern-list"`      // name of a [[smtp-pattern-list.NAME]] list

	MaxMsgRate           *Rate      `toml:"max-msg-rate"`            // ["unlimited"] messages per period
	MaxConnectRate       *Rate      `toml:"max-connect-rate"`        // ["unlimited"] new connections per period
	MaxRcptPerMessage    *int       `toml:"max-rcpt-per-message"`    // [100] recipients per transaction
	BackoffMaxMsgRate    *Rate      `toml:"backoff-max-msg-rate"`    // [max-msg-rate] while in backoff
	BackoffMaxSMTPOut    *int       `toml:"backoff-max-smtp-out"`    // [max-smtp-out] while in backoff
	BackoffRetryAfter    []Duration `toml:"backoff-retry-after"`     // [1h] while in backoff
	BackoffToNormalAfter *string    `toml:"backoff-to-normal-after"` // ["1h"]: a duration, or "delivery"
	PerNode              *bool      `toml:"per-node"`                // [false] limits count per node, not per fleet
}

// DomainSettings are the effective settings for one destination domain.
type DomainSettings struct {
	MaxSMTPOut          int
	MaxMsgPerConnection int // 0 = unlimited
	RetryAfter          []Duration
	BounceAfter         Duration
	Route               string
	UseStartTLS         bool
	RequireStartTLS     bool
	MTASTS              MTASTSMode
	SMTPPatternList     string

	MaxMsgRate           Rate
	MaxConnectRate       Rate
	MaxRcptPerMessage    int
	BackoffMaxMsgRate    Rate
	BackoffMaxSMTPOut    int
	BackoffRetryAfter    []Duration
	BackoffToNormalAfter Duration // 0: on the first delivery
	PerNode              bool
}

// CIDR is a network prefix that unmarshals from "10.0.0.0/8" or a bare address.
type CIDR struct{ netip.Prefix }
