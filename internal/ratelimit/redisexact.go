package ratelimit

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// redis_exact: one atomic script per request. The scripts read the time
// with Redis' TIME, not the caller's clock: every instance then agrees on
// it, whatever the skew between their clocks.

// ExactBucket is a token bucket (GCRA, as Bucket) kept in Redis: exact
// across the fleet, at the price of a round-trip per request.
type ExactBucket struct {
	r      *Redis
	name   string
	params atomic.Pointer[gcra]
}

// NewExactBucket returns the redis_exact limiter name of rate r.
func (r *Redis) NewExactBucket(name string, rate Rate) *ExactBucket {
	b := &ExactBucket{r: r, name: name}
	b.SetRate(rate)
	return b
}

// SetRate changes the rate; the state in Redis is kept.
func (b *ExactBucket) SetRate(r Rate) { b.params.Store(newGCRA(r)) }

// bucketScript is GCRA on the theoretical arrival time in KEYS[1], in
// microseconds (ARGV: interval, tolerance). It returns {allowed, slack or
// retry-after, reset}, all in microseconds. Numbers written back are
// formatted with %.0f: Lua's default (%.14g) would round them.
var bucketScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if tat - now > tau then
  return {0, tat - tau - now, tat - now}
end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', string.format('%.0f', math.ceil((tat - now) / 1000) + 1000))
return {1, now + tau + interval - tat, tat - now}
`)

// usec converts nanoseconds to microseconds, rounding up, kept within
// what Lua's doubles hold exactly.
func usec(ns int64) int64 { return min((ns+999)/1000, 1<<50) }

// Allow takes a token for k in Redis.
func (b *ExactBucket) Allow(ctx context.Context, k Key) (Result, error) {
	if !b.r.Up() {
		return Result{}, ErrRedisDown
	}
	g := b.params.Load()
	iv, tau := usec(g.interval), usec(g.tau)
	var buf [128]byte
	v, err := bucketScript.Run(ctx, b.r.c, []string{string(b.r.key(buf[:0], b.name, &k))}, iv, tau).Int64Slice()
	if err == nil && len(v) != 3 {
		err = errors.New("redis_exact: unexpected reply")
	}
	if err != nil {
		b.r.failed(err)
		return Result{}, err
	}
	r := Result{Limit: g.burst, Reset: time.Duration(v[2]) * time.Microsecond}
	if v[0] == 1 {
		r.Allowed = true
		r.interval, r.slack = iv, max(v[1], 0)
	} else {
		r.RetryAfter = time.Duration(v[1]) * time.Microsecond
	}
	return r, nil
}

// ExactWindow is a sliding-window counter (as Window) kept in Redis.
type ExactWindow struct {
	r      *Redis
	name   string
	params atomic.Pointer[WindowLimit]
}

// NewExactWindow returns the redis_exact limiter name of limit l.
func (r *Redis) NewExactWindow(name string, l WindowLimit) *ExactWindow {
	w := &ExactWindow{r: r, name: name}
	w.SetLimit(l)
	return w
}

// SetLimit changes the limit; the counts in Redis are kept.
func (w *ExactWindow) SetLimit(l WindowLimit) {
	if l.Window < time.Millisecond {
		l.Window = time.Second
	}
	l.Limit = max(l.Limit, 0)
	w.params.Store(&l)
}

// windowScript is the sliding-window counter on the hash KEYS[1] (i: the
// fixed window's index, p and c: the previous and current counts), in
// milliseconds (ARGV: window, limit). It returns {allowed, p, c before
// this request, elapsed in the current window}.
var windowScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local win = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local idx = math.floor(now / win)
local h = redis.call('HMGET', KEYS[1], 'i', 'p', 'c')
local i = tonumber(h[1]) or idx
local p = tonumber(h[2]) or 0
local c = tonumber(h[3]) or 0
if i == idx - 1 then p = c; c = 0 elseif i ~= idx then p = 0; c = 0 end
local into = now - idx * win
local ok = 0
if p * (win - into) / win + c + 1 <= limit then
  ok = 1
  redis.call('HSET', KEYS[1], 'i', string.format('%.0f', idx), 'p', p, 'c', c + 1)
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', 2 * win + 1000))
end
return {ok, p, c, into}
`)

// Allow counts a request of k in Redis if it is within the limit.
func (w *ExactWindow) Allow(ctx context.Context, k Key) (Result, error) {
	if !w.r.Up() {
		return Result{}, ErrRedisDown
	}
	p := w.params.Load()
	winMS := p.Window.Milliseconds()
	var buf [128]byte
	v, err := windowScript.Run(ctx, w.r.c, []string{string(w.r.key(buf[:0], w.name, &k))}, winMS, p.Limit).Int64Slice()
	if err == nil && len(v) != 4 {
		err = errors.New("redis_exact: unexpected reply")
	}
	if err != nil {
		w.r.failed(err)
		return Result{}, err
	}
	win, into := winMS*int64(time.Millisecond), v[3]*int64(time.Millisecond)
	st := winState{prev: clampU32(v[1]), curr: clampU32(v[2])}
	r := Result{Limit: p.Limit}
	if v[0] == 1 {
		used := float64(st.prev)*float64(win-into)/float64(win) + float64(st.curr)
		r.Allowed = true
		r.remaining = max(int(math.Floor(float64(p.Limit)-used-1)), 0)
		st.curr++
	} else {
		r.RetryAfter = retryAfter(st, p.Limit, win, into)
	}
	if st.curr > 0 {
		r.Reset = time.Duration(2*win - into)
	} else {
		r.Reset = time.Duration(win - into)
	}
	return r, nil
}
