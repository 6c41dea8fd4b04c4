package ingest

// headerFielder is an Accounter with header_* columns (*acct.Writer).
type headerFielder interface{ HeaderFields() []string }

// acctHeaders returns the header_* values of an f or rb record: the
// configured fields of the original message the report returned (get is
// the report's OriginalField); nil when none are configured or found.
// Opt-outs (one-click or mailto) carry no message: their columns stay
// empty.
func (s *Service) acctHeaders(get func(name string) string) map[string]string {
	hf, ok := s.o.Acct.(headerFielder)
	if !ok {
		return nil
	}
	var out map[string]string
	for _, n := range hf.HeaderFields() {
		if v := get(n); v != "" {
			if out == nil {
				out = make(map[string]string)
			}
			out[n] = v
		}
	}
	return out
}
