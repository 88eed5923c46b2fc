package ratelimit

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configure the Redis store of distributed limits.
type RedisOptions struct {
	Network, Addr      string // "tcp" or "unix"
	Username, Password string
	DB                 int
	TLS                *tls.Config // nil: plain
	DialTimeout        time.Duration
	Timeout            time.Duration // per command
	PoolSize           int           // 0: go-redis' default
	Prefix             string        // of every key
	SyncInterval       time.Duration // redis_sync
	// HealthInterval is how often the store pings Redis (default 1s): a
	// failed ping marks it down, a good one up again.
	HealthInterval time.Duration
	Logger         *slog.Logger
}

// ErrRedisDown is returned, without a round-trip, while Redis is marked
// unreachable.
var ErrRedisDown = errors.New("redis unreachable")

// Redis is the store of distributed limits: the connection pool, the
// scripts, the redis_sync loop and the health state. While Redis is down
// every call fails at once with ErrRedisDown (the caller falls back to
// local limits or refuses, as configured); a ping loop notices the
// recovery. Every state change is logged once; the password never is.
type Redis struct {
	c      *redis.Client
	o      RedisOptions
	log    *slog.Logger
	up     atomic.Bool
	errs   atomic.Uint64
	syncs  atomic.Uint64 // completed redis_sync rounds
	stateM sync.Mutex    // orders state changes with their log lines
	known  bool          // a state was logged (the first one always is)

	mu      sync.Mutex
	windows []*SyncWindow // synced by the loop

	stop chan struct{}
	done sync.WaitGroup
}

// NewRedis connects (one ping, bounded by the timeouts, sets the initial
// state) and starts the health and sync loops.
func NewRedis(o RedisOptions) *Redis {
	if o.HealthInterval <= 0 {
		o.HealthInterval = time.Second
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = 250 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Redis{o: o, log: o.Logger, stop: make(chan struct{})}
	setRedisLogger.Do(func() { redis.SetLogger(redisLogger{o.Logger}) })
	r.c = redis.NewClient(&redis.Options{
		Network: o.Network, Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB,
		TLSConfig: o.TLS, DialTimeout: o.DialTimeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout,
		PoolSize: o.PoolSize, Protocol: 2, DisableIdentity: true,
		// No retries: a failure marks Redis down and the health loop,
		// not the request, waits for it.
		MaxRetries: -1,
	})
	r.check()
	r.done.Add(2)
	go r.healthLoop()
	go r.syncLoop()
	return r
}

// Close stops the loops and closes the connections.
func (r *Redis) Close() {
	// Requests still holding the old config fall back quietly.
	r.stateM.Lock()
	r.up.Store(false)
	r.known = true
	r.stateM.Unlock()
	close(r.stop)
	r.done.Wait()
	r.c.Close()
}

// Up reports whether Redis is considered reachable.
func (r *Redis) Up() bool { return r.up.Load() }

// Errors is the number of failed Redis calls.
func (r *Redis) Errors() uint64 { return r.errs.Load() }

// Options returns the options the store was made with.
func (r *Redis) Options() RedisOptions { return r.o }

// Syncs is the number of completed redis_sync rounds.
func (r *Redis) Syncs() uint64 { return r.syncs.Load() }

// SetSyncWindows replaces the limiters the sync loop keeps in step.
func (r *Redis) SetSyncWindows(ws []*SyncWindow) {
	r.mu.Lock()
	r.windows = ws
	r.mu.Unlock()
}

// check pings Redis and updates the state. Coming up, it loads the
// scripts first: a restarted Redis has lost them.
func (r *Redis) check() {
	ctx, cancel := context.WithTimeout(context.Background(), r.o.DialTimeout+r.o.Timeout)
	defer cancel()
	err := r.c.Ping(ctx).Err()
	if err == nil && !r.Up() {
		for _, s := range scripts {
			if err = s.Load(ctx, r.c).Err(); err != nil {
				break
			}
		}
	}
	if err != nil {
		r.failed(err)
	} else if !r.Up() {
		r.setUp(true, nil)
	}
}

// failed counts a failed call and marks Redis down, unless the caller
// merely gave up (its client went away).
func (r *Redis) failed(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	r.errs.Add(1)
	r.setUp(false, err)
}

func (r *Redis) setUp(up bool, err error) {
	r.stateM.Lock()
	defer r.stateM.Unlock()
	if r.up.Swap(up) == up && r.known {
		return
	}
	r.known = true
	if up {
		r.log.Info("rate_limits.distributed: redis reachable", "redis", r.o.Addr)
	} else {
		r.log.Warn("rate_limits.distributed: redis unreachable, limits fall back as configured (on_redis_failure)",
			"redis", r.o.Addr, "err", err)
	}
}

func (r *Redis) healthLoop() {
	defer r.done.Done()
	tk := time.NewTicker(r.o.HealthInterval)
	defer tk.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-tk.C:
			r.check()
		}
	}
}

func (r *Redis) syncLoop() {
	defer r.done.Done()
	tk := time.NewTicker(r.o.SyncInterval)
	defer tk.Stop()
	var items []syncItem
	for {
		select {
		case <-r.stop:
			return
		case <-tk.C:
			items = r.Sync(items[:0])
		}
	}
}

// Sync runs one round of redis_sync: every touched client's deltas are
// pushed (INCRBY into its per-window keys, with a TTL) and the fleet's
// counts read back. It returns items for reuse.
func (r *Redis) Sync(items []syncItem) []syncItem {
	if !r.Up() {
		return items
	}
	r.mu.Lock()
	ws := r.windows
	r.mu.Unlock()
	for _, w := range ws {
		items = w.collect(items[:0], Now())
		if len(items) == 0 {
			continue
		}
		if err := r.syncWindow(w, items); err != nil {
			w.restore(items)
			r.failed(err)
			return items
		}
		w.update(items)
	}
	r.syncs.Add(1)
	return items
}

// go-redis logs pool trouble through one process-wide logger; its lines
// go to the log at debug level (the store logs each state change itself).
var setRedisLogger sync.Once

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.Debug("rate_limits.distributed: go-redis: " + fmt.Sprintf(format, v...))
}

// syncBatch bounds the commands of one pipeline.
const syncBatch = 512

func (r *Redis) syncWindow(w *SyncWindow, items []syncItem) error {
	ctx, cancel := context.WithTimeout(context.Background(), 4*r.o.Timeout+r.o.DialTimeout)
	defer cancel()
	lim := w.Limit()
	ttl := strconv.FormatInt((2*lim.Window + time.Second).Milliseconds(), 10)
	buf := make([]byte, 0, 128)
	for start := 0; start < len(items); start += syncBatch {
		batch := items[start:min(start+syncBatch, len(items))]
		cmds := make([]*redis.Cmd, len(batch))
		_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range batch {
				it := &batch[i]
				buf = append(r.key(buf[:0], w.name, &it.key), ':')
				n := len(buf)
				prev := string(strconv.AppendInt(buf, it.idx-1, 10))
				curr := string(strconv.AppendInt(buf[:n], it.idx, 10))
				cmds[i] = syncScript.EvalSha(ctx, p, []string{prev, curr}, it.prevDelta, it.currDelta, ttl)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i, c := range cmds {
			v, err := c.Int64Slice()
			if err != nil || len(v) != 2 {
				return errors.Join(errors.New("redis_sync: unexpected reply"), err)
			}
			batch[i].prevFleet, batch[i].currFleet = clampU32(v[0]), clampU32(v[1])
		}
	}
	return nil
}

func clampU32(v int64) uint32 {
	return uint32(min(max(v, 0), 1<<32-1))
}

// key appends the Redis key of k in the limiter name (a window index is
// appended by the caller where there is one).
func (r *Redis) key(buf []byte, name string, k *Key) []byte {
	buf = append(buf, r.o.Prefix...)
	buf = append(buf, name...)
	buf = append(buf, ':')
	return hex.AppendEncode(buf, k[:])
}

// StableKey is the key of a user identity that every instance derives
// alike (StringKey is seeded per process): the first 128 bits of its
// SHA-256. The Redis modes need it to count one user across the fleet.
func StableKey(s string) Key {
	sum := sha256.Sum256([]byte(s))
	return Key(sum[:16])
}

// The scripts run atomically in Redis. Each is loaded once (SCRIPT LOAD
// at connect and after every recovery) and called by its SHA (EVALSHA;
// go-redis falls back to EVAL should Redis have lost it).
var (
	// syncScript adds an instance's deltas to a client's previous and
	// current window (KEYS[1], KEYS[2]) and returns both fleet counts.
	syncScript = redis.NewScript(`
local p, c
if tonumber(ARGV[1]) > 0 then
  p = redis.call('INCRBY', KEYS[1], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  p = tonumber(redis.call('GET', KEYS[1])) or 0
end
if tonumber(ARGV[2]) > 0 then
  c = redis.call('INCRBY', KEYS[2], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
else
  c = tonumber(redis.call('GET', KEYS[2])) or 0
end
return {p, c}
`)
	scripts = []*redis.Script{syncScript, bucketScript, windowScript}
)
