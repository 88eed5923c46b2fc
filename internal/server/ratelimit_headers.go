package server

import (
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/rampart-proxy/rampart/internal/ratelimit"
)

// The response fields of rate limits: X-RateLimit-Limit, -Remaining and
// -Reset with Retry-After on refusals (RFC 6585; on allowed answers too
// with headers_on_success), and with ietf_headers the fields of
// draft-ietf-httpapi-ratelimit-headers on both:
//
//	RateLimit-Policy: "per-ip";q=200;w=2
//	RateLimit: "per-ip";r=42;t=1
//
// q is the policy's quota (a burst, or a window's limit), w its window in
// seconds (for a token bucket: the time the burst takes to refill), r
// the quota remaining and t the seconds until it is fully available
// again. An answer reports one policy: the refusing tier's, or on an
// allowed answer the tier with the least remaining.

// bucketPolicy is the policy of a token bucket tier.
func bucketPolicy(name string, r ratelimit.Rate) *rlPolicy {
	w := int64(math.Ceil(float64(max(r.Burst, 1)) / r.RPS))
	return newPolicy(name, max(r.Burst, 1), max(w, 1))
}

// windowPolicy is the policy of a sliding-window tier.
func windowPolicy(name string, l ratelimit.WindowLimit) *rlPolicy {
	return newPolicy(name, l.Limit, max(ceilSeconds(l.Window), 1))
}

func newPolicy(name string, q int, w int64) *rlPolicy {
	n := sfString(name)
	return &rlPolicy{name: n, header: n + ";q=" + strconv.Itoa(q) + ";w=" + strconv.FormatInt(w, 10)}
}

// sfString quotes s as a structured-field string (RFC 9651 §3.3.3):
// printable ASCII, with " and \ escaped; anything else becomes "_".
func sfString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			b.WriteByte('_')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// setRateHeaders writes the fields of res (policy p) into h: on a refusal
// always X-RateLimit-* and Retry-After, on an allowed answer X-RateLimit-*
// only with headers_on_success; the IETF fields with ietf_headers.
func setRateHeaders(h http.Header, rl *rlTable, res *ratelimit.Result, p *rlPolicy, refused bool) {
	reset := ceilSeconds(res.Reset)
	if refused || rl.onSuccess {
		h["X-Ratelimit-Limit"] = []string{strconv.Itoa(res.Limit)}
		h["X-Ratelimit-Remaining"] = []string{strconv.Itoa(res.Remaining())}
		h["X-Ratelimit-Reset"] = []string{strconv.FormatInt(reset, 10)}
	}
	if refused {
		h["Retry-After"] = []string{strconv.FormatInt(max(ceilSeconds(res.RetryAfter), 1), 10)}
	}
	if rl.ietf && p != nil {
		h["Ratelimit-Policy"] = []string{p.header}
		h["Ratelimit"] = []string{p.name + ";r=" + strconv.Itoa(res.Remaining()) + ";t=" + strconv.FormatInt(reset, 10)}
	}
}
