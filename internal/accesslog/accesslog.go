// Package accesslog writes one JSON line per request from the pipeline
// record. Lines are encoded on the request goroutine (the record is reused
// afterwards) and written by one background goroutine, so a slow disk never
// blocks a request: when the buffer is full the line is dropped and counted.
package accesslog

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rampart-proxy/rampart/internal/pipeline"
)

// Logger is an asynchronous JSON-lines writer.
type Logger struct {
	out     io.Writer
	closer  io.Closer
	lines   chan []byte
	dropped atomic.Int64
	done    chan struct{}

	// mu guards closed so that a request finishing during a reload never
	// sends on the closed channel of a logger that was just replaced.
	mu     sync.RWMutex
	closed bool
}

// Open starts a logger writing to path ("-" for stdout). An empty path
// returns nil, and a nil *Logger discards everything.
func Open(path string) (*Logger, error) {
	if path == "" {
		return nil, nil
	}
	l := &Logger{lines: make(chan []byte, 8192), done: make(chan struct{})}
	if path == "-" {
		l.out = os.Stdout
	} else {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return nil, err
		}
		l.out, l.closer = f, f
	}
	go l.run()
	return l, nil
}

// Log encodes rec and queues the line.
func (l *Logger) Log(rec *pipeline.Record) {
	if l == nil {
		return
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return
	}
	b = append(b, '\n')
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.dropped.Add(1)
		return
	}
	select {
	case l.lines <- b:
	default:
		l.dropped.Add(1)
	}
}

// Dropped is the number of lines lost because the writer could not keep up.
func (l *Logger) Dropped() int64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

func (l *Logger) run() {
	defer close(l.done)
	w := bufio.NewWriterSize(l.out, 64<<10)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case b, ok := <-l.lines:
			if !ok {
				w.Flush()
				return
			}
			w.Write(b)
		case <-tick.C:
			w.Flush()
		}
	}
}

// Close flushes queued lines and closes the file.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.lines)
	l.mu.Unlock()
	<-l.done
	if l.closer != nil {
		return l.closer.Close()
	}
	return nil
}
