// Package webhook posts delivery, bounce, complaint and unsubscribe events,
// taken from the accounting records, to an operator's HTTP endpoint as JSON
// batches. It is best effort with bounded memory: at most MaxQueued events
// wait, newer ones are dropped (and counted) while the endpoint is down, and
// a failed batch is retried with exponential backoff. The acct files stay
// the record of truth; events carry an id so a receiver can drop the
// duplicates that a retry after a lost response produces.
package webhook

import (
	"strings"
	"time"

	"github.com/sluice-mta/sluice/engine/acct"
)

// Event names.
const (
	EventDelivery    = "delivery"
	EventBounce      = "bounce"
	EventComplaint   = "complaint"
	EventUnsubscribe = "unsubscribe"
)

// Event is one webhook event, as posted (a batch is a JSON array of them).
type Event struct {
	ID           string    `json:"id"`    // unique per process run: "<run>-<seq>"
	Event        string    `json:"event"` // delivery, bounce, complaint, unsubscribe
	Time         time.Time `json:"time"`  // when it was logged (acct timeLogged), UTC
	QueuedAt     time.Time `json:"queued_at,omitzero"`
	Rcpt         string    `json:"rcpt,omitempty"`
	Orig         string    `json:"orig,omitempty"`
	JobID        string    `json:"job_id,omitempty"`
	EnvID        string    `json:"env_id,omitempty"`
	VMTA         string    `json:"vmta,omitempty"`
	Pool         string    `json:"vmta_pool,omitempty"`
	Queue        string    `json:"queue,omitempty"`
	SourceIP     string    `json:"source_ip,omitempty"`
	DSNStatus    string    `json:"dsn_status,omitempty"`
	DSNDiag      string    `json:"dsn_diag,omitempty"`
	DSNMta       string    `json:"dsn_mta,omitempty"`
	BounceCat    string    `json:"bounce_category,omitempty"`
	Remote       bool      `json:"remote,omitempty"` // an asynchronous bounce (a DSN that came back), not the MX's reply
	FeedbackType string    `json:"feedback_type,omitempty"`
	ReportingMTA string    `json:"reporting_mta,omitempty"`
	UserAgent    string    `json:"user_agent,omitempty"`
}

// EventOf maps an acct record to its event name; "" means the record is no
// event (received, deferred …). A feedback record whose feedbackType is
// "unsubscribe" (or "opt-out") is an unsubscribe, any other a complaint.
func EventOf(r *acct.Record) string {
	switch r.Type {
	case acct.TypeDelivered:
		return EventDelivery
	case acct.TypeBounced, acct.TypeRemoteBounce:
		return EventBounce
	case acct.TypeFeedback:
		switch strings.ToLower(r.FeedbackType) {
		case "unsubscribe", "opt-out", "optout":
			return EventUnsubscribe
		}
		return EventComplaint
	}
	return ""
}

// fromRecord builds the event of r, named name.
func fromRecord(name string, r *acct.Record) Event {
	return Event{
		Event:        name,
		Time:         r.TimeLogged.UTC(),
		QueuedAt:     utc(r.TimeQueued),
		Rcpt:         r.Rcpt,
		Orig:         r.Orig,
		JobID:        r.JobID,
		EnvID:        r.EnvID,
		VMTA:         r.VMTA,
		Pool:         r.VMTAPool,
		Queue:        r.Queue,
		SourceIP:     r.DlvSourceIP,
		DSNStatus:    r.DSNStatus,
		DSNDiag:      r.DSNDiag,
		DSNMta:       r.DSNMta,
		BounceCat:    r.BounceCat,
		Remote:       r.Type == acct.TypeRemoteBounce,
		FeedbackType: r.FeedbackType,
		ReportingMTA: r.ReportingMTA,
		UserAgent:    r.UserAgent,
	}
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}
