package accesslog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-proxy/rampart/internal/pipeline"
)

// gateSink blocks its first Write until release is closed, and keeps
// everything written.
type gateSink struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	sleep   time.Duration

	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *gateSink) Write(p []byte) (int, error) {
	if s.entered != nil {
		s.once.Do(func() { close(s.entered) })
		<-s.release
	}
	if s.sleep > 0 {
		time.Sleep(s.sleep)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}
func (s *gateSink) Tick(time.Time) {}
func (s *gateSink) Close() error   { return nil }

// ids returns the request ids of the lines written, in order.
func (s *gateSink) ids(t *testing.T) []int {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	sc := bufio.NewScanner(bytes.NewReader(s.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m struct {
			ID string `json:"request_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		n, err := strconv.Atoi(m.ID)
		if err != nil {
			t.Fatalf("request_id %q", m.ID)
		}
		out = append(out, n)
	}
	return out
}

func logID(l *Logger, id int) {
	r := pipeline.NewRecord()
	r.Timestamp = time.Now()
	r.RequestID = strconv.Itoa(id)
	r.Path = "/some/path/that/makes/the/line/longer"
	r.UserAgent = strings.Repeat("m", 100)
	l.Log(r)
	pipeline.Release(r)
}

// With the sink stuck (on a channel the test holds), Log keeps returning:
// thousands of calls complete while not one byte more can be written. The
// lines that fit the buffer are written once the sink is released; every
// other line is counted in Dropped, exactly, and reported by a log line.
func TestBackPressureNeverBlocksAndCountsDropsExactly(t *testing.T) {
	sink := &gateSink{entered: make(chan struct{}), release: make(chan struct{})}
	var logs bytes.Buffer
	var logMu sync.Mutex
	slogger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	l, err := newLogger(sink, Options{BufferBytes: 32 << 10, Log: slogger})
	if err != nil {
		t.Fatal(err)
	}
	logID(l, 0)
	<-sink.entered // the writer is inside Write, stuck until release

	const n = 20000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= n; i++ {
			logID(l, i)
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute): // a watchdog against a hang, not a speed limit
		close(sink.release)
		t.Fatal("Log blocked while the sink was stuck")
	}
	dropped := l.Dropped()
	if dropped == 0 || dropped >= n {
		t.Fatalf("Dropped() = %d with a stuck sink and a 32 KiB buffer", dropped)
	}
	close(sink.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ids := sink.ids(t)
	if int64(len(ids))+l.Dropped() != n+1 {
		t.Fatalf("%d lines reached the sink + %d dropped != %d logged", len(ids), l.Dropped(), n+1)
	}
	if l.Dropped() != dropped {
		t.Fatalf("Dropped() changed from %d to %d after the logging stopped", dropped, l.Dropped())
	}
	// The buffer kept the first lines; everything after it filled was dropped.
	for i, id := range ids {
		if id != i {
			t.Fatalf("line %d has id %d: lines reached the sink out of order or with gaps", i, id)
		}
	}
	if l.Written() != int64(len(ids)) {
		t.Fatalf("Written() = %d, sink has %d", l.Written(), len(ids))
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "access log lines dropped") || !strings.Contains(logs.String(), "dropped="+strconv.FormatInt(dropped, 10)) {
		t.Fatalf("no report of the %d dropped lines: %q", dropped, logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// A sink that is merely slow: concurrent loggers, and every line is either
// written or counted.
func TestSlowSinkAccountsForEveryLine(t *testing.T) {
	sink := &gateSink{sleep: 2 * time.Millisecond}
	l, err := newLogger(sink, Options{BufferBytes: 16 << 10, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	const workers, per = 4, 3000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				logID(l, w*per+i)
			}
		})
	}
	wg.Wait()
	l.Close()
	ids := sink.ids(t)
	if int64(len(ids))+l.Dropped() != workers*per {
		t.Fatalf("%d written + %d dropped != %d", len(ids), l.Dropped(), workers*per)
	}
	seen := map[int]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("id %d written twice", id)
		}
		seen[id] = true
	}
	t.Logf("%d written, %d dropped", len(ids), l.Dropped())
}

// A failing sink loses lines: they are counted as dropped too.
func TestSinkErrorsCountAsDropped(t *testing.T) {
	fail := writerFunc(func(p []byte) (int, error) {
		// Half of the first line gets through, then the disk is full.
		return bytes.IndexByte(p, '\n') / 2, errTest
	})
	var logs bytes.Buffer
	l, err := newLogger(writerSink{fail}, Options{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		logID(l, i)
	}
	l.Close()
	if l.Dropped() != 10 || l.Written() != 0 {
		t.Fatalf("Dropped %d Written %d, want 10 and 0", l.Dropped(), l.Written())
	}
	if !strings.Contains(logs.String(), "access log write failed") || !strings.Contains(logs.String(), "no space left on device (test)") ||
		!strings.Contains(logs.String(), "dropped=10") {
		t.Fatalf("reports: %q", logs.String())
	}
}

var errTest = &testError{}

type testError struct{}

func (*testError) Error() string { return "no space left on device (test)" }

// syncBuffer is a log destination safe for the writer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Drops are reported by a log line at most once per interval, with the
// count since the last report, and what is left is reported at Close.
func TestDropReportsAreRateLimited(t *testing.T) {
	var logs syncBuffer
	// A 1-byte buffer: every line is dropped.
	l, err := newLogger(&gateSink{}, Options{BufferBytes: 1, Log: slog.New(slog.NewTextHandler(&logs, nil)),
		reportInterval: time.Hour, tick: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		logID(l, i)
	}
	time.Sleep(20 * time.Millisecond) // many ticks, within the interval
	if s := logs.String(); s != "" {
		t.Fatalf("reported within the interval: %q", s)
	}
	l.Close()
	if s := logs.String(); strings.Count(s, "access log lines dropped") != 1 || !strings.Contains(s, "dropped=100 ") {
		t.Fatalf("at Close: %q", s)
	}

	logs = syncBuffer{}
	l, err = newLogger(&gateSink{}, Options{BufferBytes: 1, Log: slog.New(slog.NewTextHandler(&logs, nil)),
		reportInterval: time.Millisecond, tick: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A report may fall between two of the drops: what holds is that
	// each report counts the drops since the previous one and the total.
	for i := range 7 {
		logID(l, i)
	}
	waitFor(t, "periodic reports of 7 drops", func() bool { return sumDropReports(t, logs.String()) == 7 })
	for i := range 5 {
		logID(l, i)
	}
	waitFor(t, "the next reports, with the new drops only", func() bool { return sumDropReports(t, logs.String()) == 12 })
}

// sumDropReports adds up the dropped=N of every periodic report in logs,
// checking that each one's dropped_total is the sum so far.
func sumDropReports(t *testing.T, logs string) int {
	t.Helper()
	sum := 0
	for line := range strings.Lines(logs) {
		if !strings.Contains(line, "access log lines dropped") {
			continue
		}
		var d, total int
		for f := range strings.FieldsSeq(line) {
			if v, ok := strings.CutPrefix(f, "dropped="); ok {
				d, _ = strconv.Atoi(v)
			}
			if v, ok := strings.CutPrefix(f, "dropped_total="); ok {
				total, _ = strconv.Atoi(v)
			}
		}
		if d <= 0 {
			t.Fatalf("report without new drops: %q", line)
		}
		sum += d
		if total != sum {
			t.Fatalf("report %q: dropped_total %d, want %d (the drops reported so far)", line, total, sum)
		}
	}
	return sum
}
