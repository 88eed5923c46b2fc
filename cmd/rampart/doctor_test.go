package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// doctor shows what apply_sysctls would write, and writes nothing.
func TestDoctorShowsSysctlPlan(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{"net/ipv4/tcp_syncookies": "0\n", "net/ipv4/tcp_max_syn_backlog": "128\n", "net/core/somaxconn": "100000\n"}
	for p, v := range files {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(v), 0o644)
	}
	old := procSysRoot
	procSysRoot = root
	t.Cleanup(func() { procSysRoot = old })
	code, stdout, _ := runCmd("doctor")
	if code != 1 {
		t.Errorf("exit %d with mismatches", code)
	}
	for _, want := range []string{
		"with apply_sysctls: true, Rampart would write at start:",
		"net.ipv4.tcp_syncookies = 1  (now 0)",
		"net.ipv4.tcp_max_syn_backlog = 65536  (now 128)",
		"WARNING: syn_cookies is true but net.ipv4.tcp_syncookies is 0",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "net.core.somaxconn = ") {
		t.Errorf("somaxconn above max_syn_backlog would be lowered:\n%s", stdout)
	}
	for p, v := range files {
		if b, _ := os.ReadFile(filepath.Join(root, p)); string(b) != v {
			t.Errorf("doctor changed %s to %q", p, b)
		}
	}
}
