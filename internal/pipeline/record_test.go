package pipeline

import (
	"context"
	"sync"
	"testing"
)

// A connection's slot carries one request's record at a time; a second
// request on the same connection context while the first holds it (HTTP/2
// streams) gets a context of its own, and each finds its own record.
func TestSlot(t *testing.T) {
	conn := WithSlot(context.Background())
	if FromContext(conn).RequestID != "" {
		t.Fatal("empty slot gave a record with content")
	}
	a, b := NewRecord(), NewRecord()
	a.RequestID, b.RequestID = "a", "b"

	ctxA, ok := Attach(conn, a)
	if !ok || ctxA != conn {
		t.Fatalf("first Attach: ok %v, context changed %v; want the slot", ok, ctxA != conn)
	}
	ctxB, ok := Attach(conn, b)
	if ok || ctxB == conn {
		t.Fatal("second Attach took the busy slot")
	}
	if got := FromContext(ctxA).RequestID; got != "a" {
		t.Errorf("request a sees record %q", got)
	}
	if got := FromContext(ctxB).RequestID; got != "b" {
		t.Errorf("request b sees record %q", got)
	}
	// b's Detach must not free a's slot.
	Detach(ctxB, b)
	Detach(conn, b)
	if got := FromContext(ctxA).RequestID; got != "a" {
		t.Errorf("after b's Detach, request a sees record %q", got)
	}
	Detach(ctxA, a)
	if got := FromContext(conn).RequestID; got != "" {
		t.Errorf("after Detach the slot still gives record %q", got)
	}
	c := NewRecord()
	if ctxC, ok := Attach(conn, c); !ok || FromContext(ctxC) != c {
		t.Error("the freed slot was not taken by the next request")
	}
}

// Without a slot, Attach is WithRecord.
func TestAttachWithoutSlot(t *testing.T) {
	rec := NewRecord()
	ctx, ok := Attach(context.Background(), rec)
	if ok || FromContext(ctx) != rec {
		t.Fatalf("Attach without a slot: ok %v, record found %v", ok, FromContext(ctx) == rec)
	}
}

// Concurrent requests on one connection context (HTTP/2) each see their
// own record, whichever of them holds the slot.
func TestSlotConcurrent(t *testing.T) {
	conn := WithSlot(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				rec := &Record{}
				ctx, _ := Attach(conn, rec)
				if FromContext(ctx) != rec {
					t.Error("a request found another's record")
					return
				}
				Detach(ctx, rec)
			}
		})
	}
	wg.Wait()
}
