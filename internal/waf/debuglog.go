package waf

import (
	"fmt"
	"io"

	"github.com/corazawaf/coraza/v3/debuglog"
)

// quietLogger is Coraza's debug logger for Rampart. Like Coraza's default
// it prints nothing unless a SecDebugLogLevel asks for Error, Warn or Info
// (Debug and Trace stay off). Coraza asks its logger for a child with
// context fields for every transaction and every chained rule; its own
// logger builds those even when it will never print them, 30 allocations
// on a benign request. Here a child is the logger itself, at the price of
// that context on the lines a SecDebugLogLevel turns on.
type quietLogger struct{ out debuglog.Logger }

func newQuietLogger() *quietLogger { return &quietLogger{out: debuglog.Noop()} }

func (l *quietLogger) WithOutput(w io.Writer) debuglog.Logger {
	return &quietLogger{out: l.out.WithOutput(w)}
}
func (l *quietLogger) WithLevel(lvl debuglog.Level) debuglog.Logger {
	if lvl > debuglog.LevelInfo {
		lvl = debuglog.LevelInfo // Trace and Debug stay off
	}
	return &quietLogger{out: l.out.WithLevel(lvl)}
}
func (l *quietLogger) With(...debuglog.ContextField) debuglog.Logger { return l }
func (l *quietLogger) Trace() debuglog.Event                         { return noEvent{} }
func (l *quietLogger) Debug() debuglog.Event                         { return noEvent{} }
func (l *quietLogger) Info() debuglog.Event                          { return l.out.Info() }
func (l *quietLogger) Warn() debuglog.Event                          { return l.out.Warn() }
func (l *quietLogger) Error() debuglog.Event                         { return l.out.Error() }

// noEvent is a disabled log event.
type noEvent struct{}

func (noEvent) Msg(string)                                     {}
func (e noEvent) Str(string, string) debuglog.Event            { return e }
func (e noEvent) Err(error) debuglog.Event                     { return e }
func (e noEvent) Bool(string, bool) debuglog.Event             { return e }
func (e noEvent) Int(string, int) debuglog.Event               { return e }
func (e noEvent) Uint(string, uint) debuglog.Event             { return e }
func (e noEvent) Stringer(string, fmt.Stringer) debuglog.Event { return e }
func (noEvent) IsEnabled() bool                                { return false }
