package throttle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configures NewRedis.
type RedisOptions struct {
	// Prefix starts every key; default "sluice:". Nodes that share limits
	// use the same prefix. Braces in it become '_': they would change the
	// hash tag.
	Prefix string
	// Channel carries state changes; default Prefix+"state".
	Channel string
	// SubscribeWait bounds how long Subscribe waits for Redis to confirm the
	// subscription before returning; default 1s.
	SubscribeWait time.Duration
}

// Redis is the Backend shared by every node using the same Redis (or Redis
// Cluster) and prefix. Each call is one round trip: a Lua script that reads
// Redis TIME, so nodes need no synchronised clocks. A key K is stored as
// Prefix+"{K}:rate", ":conn", ":state" and ":ctr"; the {K} hash tag puts
// everything about K on one Cluster slot. Redis does not own the client:
// Close ends the subscriptions and leaves the client open.
type Redis struct {
	c       redis.UniversalClient
	prefix  string
	channel string
	wait    time.Duration
	node    string // random, makes lease ids unique across the fleet
	seq     atomic.Uint64
	closed  atomic.Bool
	life    sync.Mutex // orders Subscribe's wg.Add before Close's Wait

	base   context.Context // cancelled by Close; parent of every subscription
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

var _ Backend = (*Redis)(nil)

// NewRedis returns a backend on client, which may be a *redis.Client or a
// *redis.ClusterClient. Redis 5 or later is assumed (effects replication).
// For a Failover, give the client short timeouts (DialTimeout, ReadTimeout
// and WriteTimeout of a few hundred milliseconds) so an outage is noticed
// quickly.
func NewRedis(client redis.UniversalClient, o RedisOptions) *Redis {
	if o.Prefix == "" {
		o.Prefix = "sluice:"
	}
	o.Prefix = strings.NewReplacer("{", "_", "}", "_").Replace(o.Prefix)
	if o.Channel == "" {
		o.Channel = o.Prefix + "state"
	}
	if o.SubscribeWait <= 0 {
		o.SubscribeWait = time.Second
	}
	var id [8]byte
	rand.Read(id[:]) // never fails (crypto/rand, Go ≥ 1.24)
	r := &Redis{c: client, prefix: o.Prefix, channel: o.Channel, wait: o.SubscribeWait, node: hex.EncodeToString(id[:])}
	r.base, r.cancel = context.WithCancel(context.Background())
	return r
}

// rkey names the Redis key holding one kind of data about key.
func (r *Redis) rkey(key, kind string) string {
	return r.prefix + "{" + key + "}:" + kind
}

// Ping checks that Redis answers: every master, on a Cluster.
func (r *Redis) Ping(ctx context.Context) error {
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.Ping(ctx).Err()
		})
	}
	return r.c.Ping(ctx).Err()
}

// AcquireConn implements Backend.
func (r *Redis) AcquireConn(ctx context.Context, key string, limit int, ttl time.Duration) (Lease, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	if err := checkTTL(ttl); err != nil {
		return nil, false, err
	}
	if r.closed.Load() {
		return nil, false, ErrClosed
	}
	if limit <= 0 {
		return nil, false, nil
	}
	l := &redisLease{r: r, key: r.rkey(key, "conn"), ttl: ttl.Microseconds(),
		id: r.node + ":" + strconv.FormatUint(r.seq.Add(1), 36)}
	got, err := scriptAcquire.Run(ctx, r.c, []string{l.key}, limit, l.ttl, l.id).Int()
	if err != nil {
		return nil, false, fmt.Errorf("throttle: acquire %q: %w", key, err)
	}
	if got != 1 {
		return nil, false, nil
	}
	return l, true, nil
}

// redisLease is one member of a lease sorted set.
type redisLease struct {
	r   *Redis
	key string
	id  string
	ttl int64 // µs
}

func (l *redisLease) Renew(ctx context.Context) error {
	if l.r.closed.Load() {
		return ErrClosed
	}
	got, err := scriptRenew.Run(ctx, l.r.c, []string{l.key}, l.ttl, l.id).Int()
	if err != nil {
		return fmt.Errorf("throttle: renew lease: %w", err)
	}
	if got != 1 {
		return ErrLeaseLost
	}
	return nil
}

func (l *redisLease) Release(ctx context.Context) error {
	if err := l.r.c.ZRem(ctx, l.key, l.id).Err(); err != nil {
		return fmt.Errorf("throttle: release lease: %w", err)
	}
	return nil
}

// AllowN implements Backend.
func (r *Redis) AllowN(ctx context.Context, key string, rate Rate, n int) (bool, time.Duration, error) {
	if err := checkKey(key); err != nil {
		return false, 0, err
	}
	if rate.Unlimited() {
		return true, 0, nil
	}
	interval, tolerance, err := rate.gcra(n)
	if err != nil {
		return false, 0, err
	}
	if r.closed.Load() {
		return false, 0, ErrClosed
	}
	res, err := scriptAllow.Run(ctx, r.c, []string{r.rkey(key, "rate")},
		micros(interval), n, micros(tolerance)).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("throttle: allow %q: %w", key, err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("throttle: allow %q: unexpected reply %v", key, res)
	}
	return res[0] == 1, time.Duration(res[1]) * time.Microsecond, nil
}

// micros renders nanoseconds as fractional microseconds for a script.
func micros(ns int64) string {
	return strconv.FormatFloat(float64(ns)/1e3, 'f', 3, 64)
}

// wireState is a state as stored and as published.
type wireState struct {
	Key    string `json:"k"`
	Mode   Mode   `json:"m"`
	Until  int64  `json:"u,omitempty"` // Unix ns
	Reason string `json:"r,omitempty"`
}

func (w wireState) state() State {
	if w.Mode == "" || w.Mode == ModeNormal {
		return State{Mode: ModeNormal}
	}
	st := State{Mode: w.Mode, Reason: w.Reason}
	if w.Until != 0 {
		st.Until = time.Unix(0, w.Until)
	}
	return st
}

// SetState implements Backend.
func (r *Redis) SetState(ctx context.Context, key string, st State) error {
	if err := checkKey(key); err != nil {
		return err
	}
	st, err := normalize(st, time.Now())
	if err != nil {
		return err
	}
	if r.closed.Load() {
		return ErrClosed
	}
	w := wireState{Key: key, Mode: st.Mode, Reason: st.Reason}
	until := "0"
	if !st.Until.IsZero() {
		w.Until = st.Until.UnixNano()
		until = strconv.FormatInt((w.Until+int64(time.Millisecond)-1)/int64(time.Millisecond), 10)
	}
	msg, err := json.Marshal(w)
	if err != nil {
		return err
	}
	val := string(msg)
	if st.Mode == ModeNormal {
		val = ""
	}
	err = scriptSetState.Run(ctx, r.c, []string{r.rkey(key, "state")}, val, until, r.channel, string(msg)).Err()
	if err != nil {
		return fmt.Errorf("throttle: set state %q: %w", key, err)
	}
	return nil
}

// GetState implements Backend.
func (r *Redis) GetState(ctx context.Context, key string) (State, error) {
	if err := checkKey(key); err != nil {
		return State{}, err
	}
	if r.closed.Load() {
		return State{}, ErrClosed
	}
	b, err := r.c.Get(ctx, r.rkey(key, "state")).Bytes()
	if errors.Is(err, redis.Nil) {
		return State{Mode: ModeNormal}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("throttle: get state %q: %w", key, err)
	}
	var w wireState
	if err := json.Unmarshal(b, &w); err != nil {
		return State{}, fmt.Errorf("throttle: state %q: %w", key, err)
	}
	return w.state(), nil
}

// Subscribe implements Backend. It returns once Redis has confirmed the
// subscription, or after SubscribeWait; a lost connection is re-established
// in the background and announced by a resync Change.
func (r *Redis) Subscribe(ctx context.Context) <-chan Change {
	return r.subscribe(ctx, r.wait)
}

// maxMessage bounds a pub/sub message we decode.
const maxMessage = 4 << 10

func (r *Redis) subscribe(ctx context.Context, wait time.Duration) <-chan Change {
	out := make(chan Change)
	ready := r.startSubscription(ctx, out)
	if ready == nil {
		close(out)
		return out
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ready:
		case <-t.C:
		case <-ctx.Done():
		case <-r.base.Done():
		}
	}
	return out
}

// startSubscription starts the goroutines of one subscription, which close
// ready once Redis confirms it. It returns nil after Close.
func (r *Redis) startSubscription(ctx context.Context, out chan<- Change) (ready <-chan struct{}) {
	r.life.Lock()
	defer r.life.Unlock()
	if r.closed.Load() {
		return nil
	}
	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(r.base, cancel)
	ps := r.c.Subscribe(sctx, r.channel)
	in := ps.ChannelWithSubscriptions(redis.WithChannelSize(256), redis.WithChannelHealthCheckInterval(time.Second))
	m := newMailbox()
	confirmed := make(chan struct{})
	r.wg.Add(2)
	go func() { // owned by r: reads pub/sub until ctx or Close
		defer r.wg.Done()
		defer cancel()
		defer stop()
		first := true
		for {
			select {
			case msg, ok := <-in:
				if !ok {
					return
				}
				switch msg := msg.(type) {
				case *redis.Subscription:
					if first {
						first = false
						close(confirmed)
					} else { // reconnected: anything published meanwhile is lost
						m.put(Change{})
					}
				case *redis.Message:
					var w wireState
					if len(msg.Payload) <= maxMessage && json.Unmarshal([]byte(msg.Payload), &w) == nil && checkKey(w.Key) == nil {
						m.put(Change{Key: w.Key, State: w.state()})
					}
				}
			case <-sctx.Done():
				ps.Close()
				for range in { // let go-redis's reader see the close and exit
				}
				return
			}
		}
	}()
	go func() { // owned by r: delivers to the reader until ctx or Close
		defer r.wg.Done()
		m.pump(sctx, out)
	}()
	return confirmed
}

// Counter implements Backend.
func (r *Redis) Counter(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if err := checkCounter(key, ttl); err != nil {
		return 0, err
	}
	if r.closed.Load() {
		return 0, ErrClosed
	}
	ms := int64(0)
	if ttl > 0 {
		ms = max(1, (int64(ttl)+int64(time.Millisecond)-1)/int64(time.Millisecond))
	}
	v, err := scriptCounter.Run(ctx, r.c, []string{r.rkey(key, "ctr")}, delta, ms).Int64()
	if err != nil {
		return 0, fmt.Errorf("throttle: counter %q: %w", key, err)
	}
	return v, nil
}

// Close implements Backend. It does not close the client.
func (r *Redis) Close() error {
	r.once.Do(func() {
		r.life.Lock()
		r.closed.Store(true)
		r.life.Unlock()
		r.cancel()
		r.wg.Wait()
	})
	return nil
}
