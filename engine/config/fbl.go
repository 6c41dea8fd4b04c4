package config

import (
	"fmt"
	"net/mail"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Defaults of [fbl], [bounce] and [unsubscribe].
const (
	DefaultMaxComplaintRate = 0.003
	DefaultMinVolume        = 1000
	defaultGuardWindow      = Duration(24 * time.Hour)
	defaultTraceHeader      = "X-Sluice-Ref"
	defaultSoftWindow       = Duration(7 * 24 * time.Hour)
	minSecretLen            = 16   // trace.MinKeyLen: 128 bits
	maxSecretFile           = 4096 // bytes read from a secret file
)

// FBL configures feedback-loop handling: the report addresses, the secret
// of the trace header, the complaint-rate guard and which complaints
// suppress. Without [fbl] (or without a secret) no trace header is added
// and no complaint address is served.
type FBL struct {
	Addresses  []string `toml:"addresses"`               // complaint report addresses, accepted from anyone
	Secret     string   `toml:"secret"`                  // HMAC secret of the trace header (>= 16 bytes)
	SecretFile string   `toml:"secret-file"`             // or a file holding it (first line)
	OldSecrets []string `toml:"old-secrets"`             // previous secrets, still accepted when verifying
	Header     string   `toml:"header"`                  // ["X-Sluice-Ref"] name of the trace header
	FeedbackID string   `toml:"feedback-id"`             // Feedback-ID template: "{job}:{vmta}:{user}:SENDERID"; "" adds none
	MaxRate    float64  `toml:"max-complaint-rate"`      // [0.003] complaints per delivery that pause a job
	MinVolume  int      `toml:"min-volume"`              // [1000] deliveries in the window before the rate counts
	Window     Duration `toml:"window"`                  // [24h] sliding window of the guard
	Suppress   []string `toml:"suppress-feedback-types"` // [abuse, fraud] feedback types that suppress

	// SecretValue and OldSecretValues are the secrets, read at load. They
	// are never logged or printed.
	SecretValue     []byte   `toml:"-"`
	OldSecretValues [][]byte `toml:"-"`
}

// Enabled reports whether traces are signed and reports attributed.
func (f FBL) Enabled() bool { return len(f.SecretValue) > 0 }

// String hides the secrets from fmt.
func (f FBL) String() string {
	return fmt.Sprintf("{addresses:%v header:%s secret:<redacted>}", f.Addresses, f.Header)
}

// Bounce configures asynchronous bounce handling. An address's subaddresses
// are included: "bounces@d" also takes "bounces+TOKEN@d" (VERP).
type Bounce struct {
	Addresses          []string `toml:"addresses"`           // return-path addresses whose mail is read as bounces
	SuppressCategories []string `toml:"suppress-categories"` // [bad-mailbox, bad-domain, inactive-mailbox]
	SoftBounceLimit    int      `toml:"soft-bounce-limit"`   // [0 = off] N soft bounces …
	SoftBounceWindow   Duration `toml:"soft-bounce-window"`  // [7d] … within this long suppress

	defined bool // the file has a [bounce] table
}

// Enabled reports whether the file has a [bounce] table: only then do
// hard bounces at delivery suppress too.
func (b Bounce) Enabled() bool { return b.defined }

// Unsubscribe configures RFC 8058 one-click unsubscribe.
type Unsubscribe struct {
	Listen       string `toml:"listen"`        // host:port of the unsubscribe HTTP listener
	BaseURL      string `toml:"base-url"`      // public https URL that reaches listen
	MailtoDomain string `toml:"mailto-domain"` // unsub+TOKEN@DOMAIN is accepted and read as an opt-out
	Secret       string `toml:"secret"`        // token secret [the [fbl] secret]

	SecretValue []byte `toml:"-"`
}

// Enabled reports whether List-Unsubscribe headers are added.
func (u Unsubscribe) Enabled() bool {
	return len(u.SecretValue) > 0 && (u.BaseURL != "" || u.MailtoDomain != "")
}

// String hides the secret from fmt.
func (u Unsubscribe) String() string {
	return fmt.Sprintf("{listen:%s base-url:%s mailto-domain:%s secret:<redacted>}", u.Listen, u.BaseURL, u.MailtoDomain)
}

// Suppressed-recipient actions of a [[source]] (on-suppressed).
const (
	OnSuppressedReject = "reject"          // 550 5.7.1 at RCPT [default]
	OnSuppressedDrop   = "accept-and-drop" // 250, never delivered, an acct record
)

// validateFBL fills the defaults of [fbl], [bounce] and [unsubscribe],
// reads the secrets and checks everything. Messages never include a secret.
func (c *Config) validateFBL(p *problems, md *toml.MetaData) {
	f := &c.FBL
	if f.Header == "" {
		f.Header = defaultTraceHeader
	}
	if !md.IsDefined("fbl", "max-complaint-rate") {
		f.MaxRate = DefaultMaxComplaintRate
	}
	if f.MinVolume == 0 && !md.IsDefined("fbl", "min-volume") {
		f.MinVolume = DefaultMinVolume
	}
	setDuration(md, &f.Window, defaultGuardWindow, "fbl", "window")
	if f.Suppress == nil {
		f.Suppress = []string{"abuse", "fraud"}
	}
	b := &c.Bounce
	b.defined = md.IsDefined("bounce")
	if b.SuppressCategories == nil {
		b.SuppressCategories = []string{"bad-mailbox", "bad-domain", "inactive-mailbox"}
	}
	setDuration(md, &b.SoftBounceWindow, defaultSoftWindow, "bounce", "soft-bounce-window")

	switch {
	case f.Secret != "" && f.SecretFile != "":
		p.add("fbl.secret-file", "set secret or secret-file, not both")
	case f.SecretFile != "":
		s, err := readSecretFile(f.SecretFile)
		if err != nil {
			p.add("fbl.secret-file", "%v", err)
		} else {
			f.SecretValue = []byte(s)
		}
	case f.Secret != "":
		f.SecretValue = []byte(f.Secret)
	}
	if f.SecretValue != nil && len(f.SecretValue) < minSecretLen {
		key := "fbl.secret"
		if f.SecretFile != "" {
			key = "fbl.secret-file"
		}
		p.add(key, "the secret must be at least %d bytes long", minSecretLen)
	}
	for i, o := range f.OldSecrets {
		if len(o) < minSecretLen {
			p.add(fmt.Sprintf("fbl.old-secrets[%d]", i), "the secret must be at least %d bytes long", minSecretLen)
			continue
		}
		f.OldSecretValues = append(f.OldSecretValues, []byte(o))
	}
	if len(f.Addresses) > 0 && !f.Enabled() {
		p.add("fbl.addresses", "needs fbl.secret or fbl.secret-file (reports are attributed by the signed trace header)")
	}
	if len(f.OldSecrets) > 0 && !f.Enabled() {
		p.add("fbl.old-secrets", "needs fbl.secret or fbl.secret-file")
	}
	if !isHeaderName(f.Header) {
		p.add("fbl.header", "%q is not a header field name (RFC 5322 §3.6.8)", f.Header)
	}
	if f.FeedbackID != "" {
		if !f.Enabled() {
			p.add("fbl.feedback-id", "needs fbl.secret or fbl.secret-file")
		}
		parts := strings.Split(f.FeedbackID, ":")
		last := parts[len(parts)-1]
		if last == "" || strings.Contains(last, "{") || strings.ContainsFunc(f.FeedbackID, func(r rune) bool { return r <= ' ' || r > '~' }) {
			p.add("fbl.feedback-id", "want \"{job}:{vmta}:SENDERID\": parts of {job}, {vmta}, {user}, {source} or text, the last a fixed sender id, printable ASCII")
		}
	}
	if f.MaxRate <= 0 || f.MaxRate > 1 {
		p.add("fbl.max-complaint-rate", "must be above 0 and at most 1")
	}
	if f.MinVolume < 1 {
		p.add("fbl.min-volume", "must be at least 1")
	}
	if f.Window < Duration(time.Minute) {
		p.add("fbl.window", "must be at least 1m")
	}
	for i, t := range f.Suppress {
		if t == "" || strings.ContainsFunc(t, func(r rune) bool { return r <= ' ' || r > '~' }) {
			p.add(fmt.Sprintf("fbl.suppress-feedback-types[%d]", i), "%q is not a feedback type", t)
		}
	}
	checkAddrs(p, "fbl.addresses", f.Addresses)
	checkAddrs(p, "bounce.addresses", b.Addresses)
	for i, cat := range b.SuppressCategories {
		if !slices.Contains(bounceCategories(), cat) {
			p.add(fmt.Sprintf("bounce.suppress-categories[%d]", i), "%q is not a bounce category", cat)
		}
	}
	if b.SoftBounceLimit < 0 {
		p.add("bounce.soft-bounce-limit", "must not be negative")
	}
	if b.SoftBounceLimit > 0 && b.SoftBounceWindow <= 0 {
		p.add("bounce.soft-bounce-window", "must be positive")
	}
	c.validateUnsubscribe(p)
	for i, s := range c.Sources {
		if s.OnSuppressed != "" && s.OnSuppressed != OnSuppressedReject && s.OnSuppressed != OnSuppressedDrop {
			p.add(fmt.Sprintf("source[%d].on-suppressed", i), "%q is not one of %s, %s", s.OnSuppressed, OnSuppressedReject, OnSuppressedDrop)
		}
	}
	// Reports write f and rb records: keep them unless the file chose.
	if !md.IsDefined("acct", "records") && (len(f.Addresses) > 0 || len(b.Addresses) > 0 || c.Unsubscribe.Enabled()) {
		c.Acct.Records = append(c.Acct.Records, "f", "rb")
	}
}

func (c *Config) validateUnsubscribe(p *problems) {
	u := &c.Unsubscribe
	switch {
	case u.Secret != "":
		u.SecretValue = []byte(u.Secret)
		if len(u.SecretValue) < minSecretLen {
			p.add("unsubscribe.secret", "the secret must be at least %d bytes long", minSecretLen)
		}
	case c.FBL.Enabled():
		u.SecretValue = c.FBL.SecretValue
	}
	used := u.Listen != "" || u.BaseURL != "" || u.MailtoDomain != ""
	if used && len(u.SecretValue) == 0 {
		p.add("unsubscribe.secret", "required (or set fbl.secret): tokens are HMAC-signed")
	}
	if u.Listen != "" {
		if err := checkHostPort(u.Listen, true, 0); err != nil {
			p.add("unsubscribe.listen", "%v", err)
		}
		if u.BaseURL == "" {
			p.add("unsubscribe.base-url", "required with listen: the URL mail clients POST to")
		}
	}
	if u.BaseURL != "" {
		if err := checkBaseURL(u.BaseURL); err != nil {
			p.add("unsubscribe.base-url", "%v", err)
		}
		if u.Listen == "" {
			p.add("unsubscribe.listen", "required with base-url: Sluice serves the one-click POST")
		}
	}
	if d := u.MailtoDomain; d != "" {
		if _, err := mail.ParseAddress("unsub@" + d); err != nil || strings.ContainsAny(d, "@ ") {
			p.add("unsubscribe.mailto-domain", "%q is not a domain", d)
		}
	}
}

// checkBaseURL: absolute https (RFC 8058 §3.1), http only on loopback.
func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q: want https://host[/path]", s)
	}
	h := u.Hostname()
	if u.Scheme == "https" || u.Scheme == "http" && (h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1") {
		return nil
	}
	return fmt.Errorf("%q: one-click unsubscribe needs https (RFC 8058 §3.1)", s)
}

func checkAddrs(p *problems, key string, addrs []string) {
	for i, a := range addrs {
		at := strings.LastIndexByte(a, '@')
		if at <= 0 || at == len(a)-1 || strings.ContainsAny(a, " <>\t,") {
			p.add(fmt.Sprintf("%s[%d]", key, i), "%q is not an address (local@domain)", a)
		}
	}
}

// isHeaderName: printable ASCII except colon (RFC 5322 §3.6.8).
func isHeaderName(s string) bool {
	if s == "" || len(s) > 76 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' || s[i] == ':' {
			return false
		}
	}
	return true
}

// readSecretFile returns the first line of a secret file.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, maxSecretFile+1)
	n, _ := f.Read(buf)
	if n > maxSecretFile {
		return "", fmt.Errorf("%s: larger than %d bytes", path, maxSecretFile)
	}
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	return strings.TrimSpace(line), nil
}
