package pipeline

import (
	"context"
	"testing"
	"time"
)

// An abandon under way when the request's wait ends holds DoneWaiting
// until it is done: the request then reuses what the wait was on (its
// backend connection goes back to the pool), and an abandon finishing
// after that would close it under another client's request.
func TestDoneWaitingWaitsForAnAbandonUnderWay(t *testing.T) {
	ctx := WithSlot(context.Background())
	entered, release := make(chan struct{}), make(chan struct{})
	w := &Wait{Abandon: func() { close(entered); <-release }}
	Waiting(ctx, w)
	gone := make(chan bool, 1)
	go func() { gone <- ClientGone(ctx) }()
	<-entered
	done := make(chan struct{})
	go func() { DoneWaiting(ctx, w); close(done) }()
	select {
	case <-done:
		t.Fatal("DoneWaiting returned while the abandon was still under way")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("DoneWaiting did not return after the abandon")
	}
	if !<-gone {
		t.Error("ClientGone did not report the wait it abandoned")
	}
	// Once the wait is over, a client seen leaving abandons nothing.
	Waiting(ctx, w)
	DoneWaiting(ctx, w)
	if ClientGone(ctx) {
		t.Error("ClientGone abandoned a wait that was over")
	}
}
