package queue

import "github.com/sluice-mta/sluice/engine/spool"

// Transaction describes one outgoing SMTP transaction to Options.Decorate.
type Transaction struct {
	MsgID string
	Env   *spool.Envelope // read only
	Rcpts []string        // the recipients of this transaction
	VMTA  string          // the VMTA sending it
}

// decorate returns body with the header lines Options.Decorate gives for
// t prepended (a new slice; the spool's copy is untouched), or body itself.
func (s *Scheduler) decorate(t Transaction, body []byte) []byte {
	if s.opts.Decorate == nil {
		return body
	}
	h := s.opts.Decorate(t)
	if len(h) == 0 {
		return body
	}
	out := make([]byte, 0, len(h)+len(body))
	return append(append(out, h...), body...)
}
