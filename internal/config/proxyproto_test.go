package config

import (
	"strings"
	"testing"
)

func TestProxyProtocolConfig(t *testing.T) {
	cfg, err := Parse("min.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listeners[0].ProxyProtocol {
		t.Error("proxy_protocol defaults to true, want false")
	}

	on := strings.Replace(valid, `listen: ":8080"}`, `listen: ":8080", trusted_proxies: [10.0.0.0/8], proxy_protocol: true}`, 1)
	cfg, err = Parse("on.yaml", []byte(on))
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.Listeners[0]; !l.ProxyProtocol || len(l.TrustedProxies) != 1 {
		t.Errorf("listener = %+v, want proxy_protocol with one trusted proxy", l)
	}
}

func TestProxyProtocolMistakes(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"no trusted proxies", strings.Replace(valid, `listen: ":8080"}`, `listen: ":8080", proxy_protocol: true}`, 1),
			`bad.yaml:2: listener "public": proxy_protocol needs trusted_proxies`},
		{"empty trusted proxies", strings.Replace(valid, `listen: ":8080"}`, "listen: \":8080\",\n     trusted_proxies: [],\n     proxy_protocol: true}", 1),
			`bad.yaml:4: listener "public": proxy_protocol needs trusted_proxies`},
		{"not a boolean", strings.Replace(valid, `listen: ":8080"}`, `listen: ":8080", trusted_proxies: [10.0.0.1], proxy_protocol: v2}`, 1),
			`bad.yaml:2:`},
	} {
		_, err := Parse("bad.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}
