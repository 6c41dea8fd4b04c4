package mailmsg

import (
	"strings"
	"time"
)

// FirstToken returns v up to the first white space, ';' or '(' after
// trimming.
func FirstToken(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexAny(v, " \t;("); i >= 0 {
		v = v[:i]
	}
	return v
}

// TypedName reads a field of the form "type; name" (RFC 3464 §2.1.2
// mta-name-type, e.g. "dns; mx.example.com (comment)") and returns the
// name alone.
func TypedName(v string) string {
	if t, rest, ok := strings.Cut(v, ";"); ok && !strings.ContainsAny(strings.TrimSpace(t), " \t") {
		v = rest
	}
	return FirstToken(v)
}

// MessageID returns a Message-ID value without white space and angle
// brackets (RFC 5322 §3.6.4).
func MessageID(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return strings.TrimSpace(v[i+1 : i+j])
		}
	}
	return FirstToken(v)
}

// obsZones are the RFC 5322 §4.3 obsolete zone names; time.Parse gives them
// a zero offset unless they happen to be the local zone.
var obsZones = map[string]int{
	"UT": 0, "GMT": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5,
	"MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
}

// fixObsZone gives t the offset its obsolete zone name stands for.
func fixObsZone(t time.Time) time.Time {
	name, off := t.Zone()
	h, ok := obsZones[name]
	if !ok || off == h*3600 {
		return t
	}
	y, mo, d := t.Date()
	hh, mm, ss := t.Clock()
	return time.Date(y, mo, d, hh, mm, ss, t.Nanosecond(), time.FixedZone(name, h*3600))
}
