package proxy

// Selector picks the backend for one request. A Selector is built for a
// fixed backend set (see NewSelector) and rebuilt when membership changes,
// which is rare; Select runs on every request and must not allocate.
//
// Select must skip backends for which Available() is false and backends in
// tried (those a retry already failed on), and return nil when none is left.
// key is the consistent-hash key (client IP or a header value); the other
// policies ignore it.
type Selector interface {
	Select(key string, tried []*Backend) *Backend
}
