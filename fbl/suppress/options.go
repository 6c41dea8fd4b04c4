package suppress

import (
	"time"

	"go.uber.org/zap"
)

// Option configures NewLocal or NewRedis.
type Option func(*options)

type options struct {
	now        func() time.Time
	log        *zap.Logger
	purgeEvery time.Duration
	noCache    bool
	echoWait   time.Duration
}

func buildOptions(opts []Option) options {
	o := options{now: time.Now, log: zap.NewNop(), purgeEvery: time.Minute, echoWait: time.Second}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// WithClock sets the clock used for Added and for expiry; the default is
// time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLogger sets the logger of NewLocal (NewRedis takes one directly).
func WithLogger(log *zap.Logger) Option {
	return func(o *options) {
		if log != nil {
			o.log = log
		}
	}
}

// WithPurgeInterval sets how often expired entries are deleted from storage
// (default one minute; 0 turns the background purge off). Expired entries
// stop counting at once whatever this is; purging only reclaims space.
func WithPurgeInterval(d time.Duration) Option { return func(o *options) { o.purgeEvery = d } }

// WithoutCache makes a Redis store read Redis on every IsSuppressed instead
// of keeping the list in memory. It saves memory on very large lists at the
// cost of a round trip per lookup.
func WithoutCache() Option { return func(o *options) { o.noCache = true } }
