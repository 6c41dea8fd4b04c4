package queue

import "github.com/sluice-mta/sluice/engine/acct"

// The header_* acct columns ([acct] header-fields): the values are read
// once per message from its header section and kept with it, so that each
// later record (r, every attempt's d, b or t, a cancellation's b) has them
// without reading the body again. The body is at hand at receipt
// (EnqueueBody) and at each delivery; a message recovered from the spool
// that settles without an attempt (a queue-wide DNS or connection failure,
// a cancellation) has its body read from the spool once.

// headerFielder is an Accounter with header_* columns (*acct.Writer).
type headerFielder interface{ HeaderFields() []string }

// acctHeaders returns msg's header_* values, reading them from body (or,
// when body is nil, from the spool) the first time; nil when the
// Accounter has no header columns, without allocating.
func (s *Scheduler) acctHeaders(msg *message, body []byte) map[string]string {
	hf, ok := s.opts.Acct.(headerFielder)
	if !ok {
		return nil
	}
	names := hf.HeaderFields()
	if len(names) == 0 {
		return nil
	}
	msg.mu.Lock()
	h, known := msg.hdrs, msg.hdrsKnown
	msg.mu.Unlock()
	if known {
		return h
	}
	if body == nil {
		b, err := s.opts.Store.Body(msg.id)
		if err != nil {
			return nil // the columns stay empty; a later attempt tries again
		}
		body = b
	}
	h = acct.HeaderValues(body, names)
	msg.mu.Lock()
	msg.hdrs, msg.hdrsKnown = h, true
	msg.mu.Unlock()
	return h
}
