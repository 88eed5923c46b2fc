package pipeline

import "context"

// A Wait is a request's wait for its backend's answer, which can be
// abandoned when the client leaves (the HTTP/1 engine's Server.OnClientGone;
// an HTTP/2 stream's reset cancels its context instead). Abandon must be
// safe to call from another goroutine while the wait goes on.
type Wait struct {
	Abandon func()
}

// Waiting registers w as the wait of the request whose context is ctx, if
// ctx carries a connection's slot (HTTP/1); otherwise it does nothing. The
// caller unregisters it with DoneWaiting as soon as the wait is over: an
// abandon after that would hit an answer being relayed.
func Waiting(ctx context.Context, w *Wait) {
	if s, ok := ctx.Value(recordKey{}).(*slot); ok {
		s.wait.Store(w)
	}
}

// DoneWaiting unregisters w (see Waiting). It returns only when no abandon
// of w is under way: the caller may then reuse what w would abandon (a
// backend connection goes back to its pool for another client's request).
func DoneWaiting(ctx context.Context, w *Wait) {
	if s, ok := ctx.Value(recordKey{}).(*slot); ok {
		s.abandoning.Lock()
		s.wait.CompareAndSwap(w, nil)
		s.abandoning.Unlock()
	}
}

// ClientGone abandons the registered wait of the connection whose context
// is connCtx, if there is one; it reports whether there was.
func ClientGone(connCtx context.Context) bool {
	s, ok := connCtx.Value(recordKey{}).(*slot)
	if !ok {
		return false
	}
	s.abandoning.Lock()
	defer s.abandoning.Unlock()
	w := s.wait.Swap(nil)
	if w == nil {
		return false
	}
	w.Abandon()
	return true
}
