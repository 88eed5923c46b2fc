package server

import (
	"fmt"
	"strings"
	"testing"
)

// Actions Rampart takes by itself are in the audit trail too.
func TestOutlierEjectionIsAudited(t *testing.T) {
	bs := newTestBackends(t, "a", "b")
	bs[0].status.Store(500)
	e := startEnv(t, fmt.Sprintf(`
listeners: [{name: web, listen: "127.0.0.1:0"}]
routes: [{name: all, match: {path_prefix: /}, pool: p}]
pools:
  - name: p
    backends: %s
    outlier_detection: {consecutive_5xx: 2, ejection_time: 1m}
`, backendsYAML(bs...)))
	for range 6 {
		e.get("/")
	}
	var body string
	eventually(t, "ejection recorded", func() bool {
		_, body = rawAdmin(t, e, "GET", "/audit?limit=10", "")
		return strings.Contains(body, `"action":"backend.eject"`)
	})
	for _, want := range []string{`"type":"system"`, `"id":"outlier_detector"`, `"reason":"consecutive_5xx"`, `"pool":"p"`, `"id":"a"`} {
		if !strings.Contains(body, want) {
			t.Errorf("audit entry lacks %s:\n%s", want, body)
		}
	}
}
