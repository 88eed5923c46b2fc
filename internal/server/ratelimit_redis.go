package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/evloop"
	"github.com/rampart-proxy/rampart/internal/ratelimit"
)

// rlRemote is a tier's distributed limiter (rate_limits.distributed):
// redis_sync or redis_exact, one of sync, bucket or window set. The tier's
// local limiter (limit/N) stays the fallback while Redis is unreachable.
type rlRemote struct {
	store      *ratelimit.Redis
	sync       *ratelimit.SyncWindow
	bucket     *ratelimit.ExactBucket
	window     *ratelimit.ExactWindow
	failClosed bool
}

// What a remote check decided.
const (
	remoteDone        = iota // res is the answer
	remoteUseLocal           // no remote limiter, or Redis down and fail_open
	remoteUnavailable        // Redis down and fail_closed: refuse with 503
)

// allow checks k against the distributed limiter. A nil d (the tier is
// local) says remoteUseLocal.
func (d *rlRemote) allow(ctx context.Context, k ratelimit.Key, now int64) (ratelimit.Result, int) {
	if d == nil {
		return ratelimit.Result{}, remoteUseLocal
	}
	var res ratelimit.Result
	var err error
	switch {
	case !d.store.Up():
		err = ratelimit.ErrRedisDown
	case d.sync != nil:
		res = d.sync.Allow(k, now)
	case d.bucket != nil:
		evloop.Detach(ctx) // a round trip to Redis: not on an event loop
		res, err = d.bucket.Allow(ctx, k)
	default:
		evloop.Detach(ctx)
		res, err = d.window.Allow(ctx, k)
	}
	switch {
	case err == nil:
		return res, remoteDone
	case d.failClosed:
		return res, remoteUnavailable
	}
	return res, remoteUseLocal
}

// redisStore returns the store for cfg's distributed.redis, reusing the
// running one when nothing about the connection changed. It runs under
// l.mu.
func (l *limiters) redisStore(cfg *config.Config, d config.Distributed) *ratelimit.Redis {
	rc := d.Redis
	pw, err := cfg.RedisPassword(rc)
	if err != nil { // validated moments ago; the file changed since
		l.log.Error("rate_limits.distributed: redis password_file unreadable, connecting without a password", "err", err)
	}
	var tlsCfg *tls.Config
	if rc.TLS != nil {
		network, addr := config.RedisNetwork(rc.Address)
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: rc.TLS.ServerName}
		if host, _, err := net.SplitHostPort(addr); err == nil && tlsCfg.ServerName == "" && network == "tcp" {
			tlsCfg.ServerName = host
		}
		if rc.TLS.CAFile != "" {
			pem, err := os.ReadFile(cfg.Resolve(rc.TLS.CAFile))
			pool := x509.NewCertPool()
			if err != nil || !pool.AppendCertsFromPEM(pem) {
				l.log.Error("rate_limits.distributed: redis tls.ca_file unusable, the connection will fail", "err", errors.Join(err, errors.New("no certificate in ca_file")))
			}
			tlsCfg.RootCAs = pool
		}
	}
	// Everything that makes a connection different, the password as a
	// fingerprint only (it is compared, never shown).
	tlsID, conn := "", *rc
	if rc.TLS != nil {
		tlsID = fmt.Sprintf("%+v", *rc.TLS)
	}
	conn.TLS = nil
	id := fmt.Sprintf("%+v|%s|%x|%s|%s", conn, tlsID, hashString(pw), d.KeyPrefix, d.SyncInterval.D())
	if l.redis != nil && l.redisID == id {
		return l.redis
	}
	l.closeRedis()
	network, addr := config.RedisNetwork(rc.Address)
	l.redis = ratelimit.NewRedis(ratelimit.RedisOptions{
		Network: network, Addr: addr, Username: rc.Username, Password: pw, DB: rc.DB, TLS: tlsCfg,
		DialTimeout: rc.DialTimeout.D(), Timeout: rc.Timeout.D(), PoolSize: rc.PoolSize,
		Prefix: d.KeyPrefix, SyncInterval: d.SyncInterval.D(), HealthInterval: l.redisHealth, Logger: l.log,
	})
	l.redisID = id
	// Limiters of the old store go with it.
	clear(l.remotes)
	return l.redis
}

func hashString(s string) [16]byte { return ratelimit.StableKey(s) }

// closeRedis runs under l.mu.
func (l *limiters) closeRedis() {
	if l.redis == nil {
		return
	}
	l.redisErrBase += l.redis.Errors()
	l.redis.Close()
	l.redis, l.redisID = nil, ""
}

// remote returns the distributed limiter of the tier name in mode (nil
// for local), reusing it by name. A bucket tier (rate set) runs as a
// token bucket in redis_exact and, in redis_sync, as a sliding window of
// its burst over the time the burst takes to refill (at least 1s).
func (l *limiters) remote(store *ratelimit.Redis, failClosed bool, mode, name string, rate *ratelimit.Rate, win ratelimit.WindowLimit, keep map[string]bool) *rlRemote {
	if mode == config.ModeLocal || store == nil {
		return nil
	}
	if rate != nil {
		win = bucketWindow(*rate)
	}
	key := mode + " " + name
	keep[key] = true
	d := l.remotes[key]
	if d == nil {
		d = &rlRemote{store: store}
		switch {
		case mode == config.ModeRedisSync:
			d.sync = ratelimit.NewSyncWindow(name, win, 0)
		case rate != nil:
			d.bucket = store.NewExactBucket(name, *rate)
		default:
			d.window = store.NewExactWindow(name, win)
		}
		l.remotes[key] = d
	}
	switch {
	case d.sync != nil:
		d.sync.SetLimit(win)
	case d.bucket != nil:
		d.bucket.SetRate(*rate)
	default:
		d.window.SetLimit(win)
	}
	// A copy per table: failClosed belongs to this config.
	c := *d
	c.failClosed = failClosed
	return &c
}

// bucketWindow is the sliding window redis_sync counts a token bucket in.
func bucketWindow(r ratelimit.Rate) ratelimit.WindowLimit {
	secs := math.Max(float64(max(r.Burst, 1))/r.RPS, 1)
	return ratelimit.WindowLimit{Limit: max(int(math.Round(r.RPS*secs)), 1), Window: time.Duration(secs * float64(time.Second))}
}

// redisStatus is nil unless a Redis store is configured.
func (l *limiters) redisStatus() *RedisStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.redis == nil {
		return nil
	}
	return &RedisStatus{Up: l.redis.Up(), Errors: l.redisErrBase + l.redis.Errors()}
}

// RedisStatus is the distributed limits' store in Status.
type RedisStatus struct {
	Up     bool   `json:"up"`
	Errors uint64 `json:"errors"`
}

// redisCollector exports the store's state at scrape time.
type redisCollector struct{ l *limiters }

var (
	redisUpDesc = prometheus.NewDesc("rampart_ratelimit_redis_up",
		"1 while the Redis store of distributed rate limits is reachable, 0 while limits fall back (on_redis_failure).", nil, nil)
	redisErrDesc = prometheus.NewDesc("rampart_ratelimit_redis_errors_total",
		"Failed calls to the Redis store of distributed rate limits.", nil, nil)
)

func (c redisCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- redisUpDesc
	ch <- redisErrDesc
}

func (c redisCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.l.redisStatus()
	if st == nil {
		return
	}
	up := 0.0
	if st.Up {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(redisUpDesc, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(redisErrDesc, prometheus.CounterValue, float64(st.Errors))
}
