// Package accesslog writes one sanitised JSON line per request from the
// pipeline record.
//
// Privacy by construction: the only input is a *pipeline.Record, and the
// only encoder is the Sanitizer's, which applies every rule (credentials
// redacted, sensitive parameters masked, card numbers masked, user agent
// truncated, control characters escaped) while it writes. There is no API
// that writes raw JSON or bytes.
//
// The request path never waits for the disk: Log encodes the line on the
// request goroutine (the record is reused as soon as Log returns) into a
// bounded buffer and returns. One background goroutine writes whole
// buffers (batches) to the sink. When the buffer is full the line is
// dropped and counted exactly (Dropped); drops are reported by a log line
// at most every 10 s. Files are rotated by size and age, compressed and
// expired (see rotate.go); `rampart logs purge` removes a client's lines
// (see purge.go).
package accesslog

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/pipeline"
)

// Options configures a Logger. The zero value is valid: default sanitising,
// no rotation, a 4 MiB buffer.
type Options struct {
	Sanitize SanitizeOptions

	// MaxSizeBytes rotates the file before it would grow past this size;
	// 0: never by size.
	MaxSizeBytes int64
	// MaxBackups is how many rotated files are kept; 0: no limit.
	MaxBackups int
	// MaxAge deletes rotated files older than this (by the time they were
	// rotated) and rotates the active file once its first line is a day
	// old, so that retention applies to every line; 0: no age limit.
	MaxAge time.Duration
	// Compress gzips rotated files.
	Compress bool

	// BufferBytes bounds the lines waiting for the writer; 0: 4 MiB.
	BufferBytes int
	// Log receives the reports of dropped lines and write errors; nil:
	// slog.Default().
	Log *slog.Logger

	// Tests only.
	now            func() time.Time
	reportInterval time.Duration
	tick           time.Duration
}

// DefaultBufferBytes bounds the lines waiting for the writer.
const DefaultBufferBytes = 4 << 20

// ConfigOptions turns logging.access_log into Options.
func ConfigOptions(a config.AccessLog, log *slog.Logger) Options {
	return Options{
		Sanitize: SanitizeOptions{
			RedactHeaders:     a.Sanitize.RedactHeaders,
			MaskQueryParams:   a.Sanitize.MaskQueryParams,
			TruncateUserAgent: a.Sanitize.TruncateUserAgent,
		},
		MaxSizeBytes: int64(a.Rotation.MaxSizeMB) << 20,
		MaxBackups:   a.Rotation.MaxBackups,
		MaxAge:       time.Duration(a.Rotation.MaxAgeDays) * 24 * time.Hour,
		Compress:     a.Rotation.Compress,
		Log:          log,
	}
}

// sink is where batches of whole lines go.
type sink interface {
	// Write writes whole lines and returns how many bytes it wrote.
	Write(p []byte) (int, error)
	// Tick is called about every second (age rotation, maintenance).
	Tick(now time.Time)
	Close() error
}

// Logger is the asynchronous access log writer. A nil *Logger discards.
type Logger struct {
	san     *Sanitizer
	log     *slog.Logger
	now     func() time.Time
	sink    sink
	maxBuf  int
	report  time.Duration
	tick    time.Duration
	encPool sync.Pool // *lineBuf

	mu     sync.Mutex
	buf    []byte // lines waiting for the writer
	closed bool

	wake    chan struct{} // buffer went from empty to not empty, or Close
	done    chan struct{}
	dropped atomic.Int64
	written atomic.Int64

	// lastLateReport rate-limits the report of lines logged after Close.
	lastLateReport atomic.Int64
}

type lineBuf struct{ b []byte }

// Open starts a logger writing to path ("-" for stdout). An empty path
// returns nil, and a nil *Logger discards everything.
func Open(path string, o Options) (*Logger, error) {
	if path == "" {
		return nil, nil
	}
	if path == "-" {
		return newLogger(writerSink{w: os.Stdout}, o)
	}
	if o.now == nil {
		o.now = time.Now
	}
	r, err := openRotator(path, o)
	if err != nil {
		return nil, err
	}
	l, err := newLogger(r, o)
	if err != nil {
		r.Close()
		return nil, err
	}
	return l, nil
}

// newLogger starts the writer goroutine on s.
func newLogger(s sink, o Options) (*Logger, error) {
	san, err := NewSanitizer(o.Sanitize)
	if err != nil {
		return nil, err
	}
	l := &Logger{san: san, log: o.Log, now: o.now, sink: s, maxBuf: o.BufferBytes,
		report: o.reportInterval, tick: o.tick,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	if l.log == nil {
		l.log = slog.Default()
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.maxBuf <= 0 {
		l.maxBuf = DefaultBufferBytes
	}
	if l.report <= 0 {
		l.report = 10 * time.Second
	}
	if l.tick <= 0 {
		l.tick = time.Second
	}
	l.encPool.New = func() any { return new(lineBuf) }
	go l.run()
	return l, nil
}

// Log sanitises and encodes rec and queues the line. It never blocks on
// the sink: if the buffer is full, the line is dropped and counted.
func (l *Logger) Log(rec *pipeline.Record) {
	if l == nil {
		return
	}
	lb := l.encPool.Get().(*lineBuf)
	lb.b = l.san.AppendLine(lb.b[:0], rec)
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		l.dropped.Add(1)
		l.reportLate()
	case len(l.buf)+len(lb.b) > l.maxBuf:
		l.mu.Unlock()
		l.dropped.Add(1)
	default:
		wasEmpty := len(l.buf) == 0
		l.buf = append(l.buf, lb.b...)
		l.mu.Unlock()
		if wasEmpty {
			select {
			case l.wake <- struct{}{}:
			default:
			}
		}
	}
	if cap(lb.b) <= maxPooledScratch {
		l.encPool.Put(lb)
	}
}

// Dropped is the number of lines lost: the writer could not keep up (the
// buffer was full), the sink failed, or the logger was already closed.
func (l *Logger) Dropped() int64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

// Written is the number of lines the sink accepted.
func (l *Logger) Written() int64 {
	if l == nil {
		return 0
	}
	return l.written.Load()
}

func (l *Logger) run() {
	defer close(l.done)
	var batch []byte
	tick := time.NewTicker(l.tick)
	defer tick.Stop()
	var rep report
	lastReport := l.now()
	for {
		select {
		case <-l.wake:
		case <-tick.C:
			now := l.now()
			l.sink.Tick(now)
			if now.Sub(lastReport) >= l.report {
				rep.log(l)
				lastReport = now
			}
			continue
		}
		l.mu.Lock()
		batch, l.buf = l.buf, batch[:0]
		closed := l.closed
		l.mu.Unlock()
		if len(batch) > 0 {
			n, err := l.sink.Write(batch)
			lines := int64(bytes.Count(batch, newline))
			lost := lines - int64(bytes.Count(batch[:n], newline))
			l.written.Add(lines - lost)
			if err != nil {
				l.dropped.Add(lost)
				rep.err = err
				rep.errs++
			}
		}
		if cap(batch) > 2*l.maxBuf { // one huge batch: do not keep it
			batch = nil
		}
		if closed {
			rep.log(l)
			return
		}
	}
}

var newline = []byte{'\n'}

// report is what the writer has to say since its last report.
type report struct {
	dropped int64 // Dropped() at the last report
	err     error // the last write error
	errs    int   // write errors since the last report
}

// log reports lines dropped and write errors since the last report.
func (r *report) log(l *Logger) {
	total := l.dropped.Load()
	if d := total - r.dropped; d > 0 {
		l.log.Warn("access log lines dropped: the access log cannot keep up or cannot write",
			"dropped", d, "dropped_total", total)
	}
	if r.errs > 0 {
		l.log.Error("access log write failed", "error", r.err.Error(), "failures", r.errs)
	}
	*r = report{dropped: total}
}

// reportLate reports, at most every report interval, lines logged after
// Close (a request that outlived the logger a reload replaced).
func (l *Logger) reportLate() {
	now := l.now().UnixNano()
	last := l.lastLateReport.Load()
	if now-last < int64(l.report) || !l.lastLateReport.CompareAndSwap(last, now) {
		return
	}
	l.log.Warn("access log lines dropped: logged after the access log was closed", "dropped_total", l.dropped.Load())
}

// Close writes the queued lines, finishes rotation work and closes the
// file. Lines logged afterwards are dropped and counted.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.done
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	<-l.done
	return l.sink.Close()
}

// writerSink is stdout, or a test's writer: no rotation.
type writerSink struct{ w io.Writer }

func (s writerSink) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s writerSink) Tick(time.Time)              {}
func (s writerSink) Close() error                { return nil }
