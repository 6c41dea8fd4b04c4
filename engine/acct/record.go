// Package acct writes the accounting log: one CSV row per event (received,
// delivered, bounced, deferred …) in PowerMTA's acct format, so that tools
// written for PowerMTA files read ours. Files are append-only, one per UTC
// day (acct-YYYY-MM-DD.csv), each starting with a header row; they may be
// moved aside by size or interval and deleted when old ([acct-file],
// rotate.go). Writes are buffered in memory and reach the disk within the
// flush interval.
package acct

import (
	"strconv"
	"strings"
	"time"
)

// Record types (DOMAIN.md §2).
const (
	TypeDelivered      = "d"  // delivered
	TypeBounced        = "b"  // bounced (permanent)
	TypeTransient      = "t"  // transient failure (deferred)
	TypeTransientQueue = "tq" // transient failure of a whole queue
	TypeReceived       = "r"  // received
	TypeFeedback       = "f"  // feedback-loop report
	TypeRemoteBounce   = "rb" // remote (asynchronous) bounce
	TypeRemoteStatus   = "rs" // remote status
)

// TimeLayout is how times are written: "2026-11-28 10:00:00+0000", in UTC.
const TimeLayout = "2006-01-02 15:04:05-0700"

// fields is the column order of PowerMTA's acct files, without the
// operator-chosen header_* columns (which go after vmtaPool, headers.go),
// followed by the extra fields seen in real files.
var fields = [...]string{
	"type", "timeLogged", "timeQueued", "orig", "rcpt", "orcpt", "dsnAction",
	"dsnStatus", "dsnDiag", "dsnMta", "bounceCat", "srcType", "srcMta", "dlvType",
	"dlvSourceIp", "dlvDestinationIp", "dlvEsmtpAvailable", "dlvSize", "vmta",
	"jobId", "envId", "queue", "vmtaPool", "repSourceIp", "feedbackType", "format",
	"userAgent", "reportingMta", "reportedDomain", "rcvSourceIp", "dsnReportingMta",
	"timeFirstAttempt", "totalSecondsQueued", "dlvTlsProtocol", "dlvTlsCipher",
}

// numFields is the number of columns.
const numFields = len(fields)

// Fields returns the column names in file order, as in the header row of a
// Writer with no header fields configured. The slice is new on each call.
func Fields() []string { return append([]string(nil), fields[:]...) }

// Record is one accounting event. Zero times and empty strings are written
// as empty fields; times are written in UTC (TimeLayout). Derived columns:
// dlvSize is written for delivery attempts (d, b, t, tq) even when 0, and for
// other types (r, f, …) only when non-zero; totalSecondsQueued is
// TimeLogged − TimeQueued in whole seconds (never negative), empty when
// TimeQueued is unset. Line breaks inside a value (multi-line SMTP replies)
// become spaces, so every record is one line of the file.
type Record struct {
	Type                                     string // one of the Type constants
	TimeLogged, TimeQueued, TimeFirstAttempt time.Time
	Orig, Rcpt, ORcpt                        string
	DSNAction, DSNStatus, DSNDiag, DSNMta    string
	BounceCat                                string
	SrcType, SrcMta                          string
	DlvType, DlvSourceIP, DlvDestinationIP   string
	DlvEsmtpAvailable                        string
	DlvSize                                  int64
	VMTA, JobID, EnvID, Queue, VMTAPool      string
	RepSourceIP, FeedbackType, Format        string
	UserAgent, ReportingMTA, ReportedDomain  string
	RcvSourceIP, DSNReportingMTA             string
	DlvTLSProtocol, DlvTLSCipher             string

	// Headers holds the values of the operator-chosen header_* columns
	// (Options.HeaderFields), keyed by field name as configured (any case
	// is found); see HeaderValues. nil when none are configured or known:
	// the columns are then empty. Producers may share one map between the
	// records of a message, so it must not be modified once written.
	Headers map[string]string
}

// row fills out with r's columns in file order (see Record for the derived
// columns).
func (r *Record) row(out *[numFields]string) {
	size := ""
	if r.DlvSize != 0 || isAttempt(r.Type) {
		size = strconv.FormatInt(r.DlvSize, 10)
	}
	queued := ""
	if !r.TimeQueued.IsZero() && !r.TimeLogged.IsZero() {
		queued = strconv.FormatInt(int64(max(r.TimeLogged.Sub(r.TimeQueued), 0)/time.Second), 10)
	}
	*out = [numFields]string{
		r.Type, formatTime(r.TimeLogged), formatTime(r.TimeQueued), r.Orig, r.Rcpt, r.ORcpt, r.DSNAction,
		r.DSNStatus, r.DSNDiag, r.DSNMta, r.BounceCat, r.SrcType, r.SrcMta, r.DlvType,
		r.DlvSourceIP, r.DlvDestinationIP, r.DlvEsmtpAvailable, size, r.VMTA,
		r.JobID, r.EnvID, r.Queue, r.VMTAPool, r.RepSourceIP, r.FeedbackType, r.Format,
		r.UserAgent, r.ReportingMTA, r.ReportedDomain, r.RcvSourceIP, r.DSNReportingMTA,
		formatTime(r.TimeFirstAttempt), queued, r.DlvTLSProtocol, r.DlvTLSCipher,
	}
	for i, v := range out {
		if strings.ContainsAny(v, "\r\n") {
			out[i] = oneLine(v)
		}
	}
}

func isAttempt(typ string) bool {
	return typ == TypeDelivered || typ == TypeBounced || typ == TypeTransient || typ == TypeTransientQueue
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(TimeLayout)
}

// oneLine replaces each line break (CRLF, CR or LF) with one space.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r\n", " ")
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
