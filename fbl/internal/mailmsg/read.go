package mailmsg

import (
	"errors"
	"io"
)

// ErrTooLarge is returned by ReadLimited for input over the limit.
var ErrTooLarge = errors.New("input too large")

// ReadLimited reads all of r, up to max bytes. Longer input gives
// ErrTooLarge after reading at most max+1 bytes.
func ReadLimited(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, ErrTooLarge
	}
	return b, nil
}
