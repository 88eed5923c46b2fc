package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/rampart-proxy/rampart/internal/config"
)

// SysctlChange is one kernel setting syn_flood_protection.apply_sysctls
// writes: Key as sysctl(8) names it, Path below /proc/sys.
type SysctlChange struct {
	Key  string
	Path string
	From int // -1: could not be read
	To   int
}

// PlanSysctls lists what apply_sysctls writes for f on a kernel with
// posture p: tcp_syncookies=1 when syn_cookies is true and the kernel has
// them off, and tcp_max_syn_backlog and somaxconn raised to
// max_syn_backlog. Nothing is ever lowered: a host tuned higher stays so.
func (p SYNPosture) PlanSysctls(f *config.SynFloodProtection) []SysctlChange {
	if !f.SYNFloodEnabled() {
		return nil
	}
	var out []SysctlChange
	if f.SYNCookies() && p.SynCookies <= 0 {
		out = append(out, SysctlChange{"net.ipv4.tcp_syncookies", "net/ipv4/tcp_syncookies", p.SynCookies, 1})
	}
	if p.MaxSynBacklog < f.MaxSynBacklog {
		out = append(out, SysctlChange{"net.ipv4.tcp_max_syn_backlog", "net/ipv4/tcp_max_syn_backlog", p.MaxSynBacklog, f.MaxSynBacklog})
	}
	if p.Somaxconn < f.MaxSynBacklog {
		out = append(out, SysctlChange{"net.core.somaxconn", "net/core/somaxconn", p.Somaxconn, f.MaxSynBacklog})
	}
	return out
}

// ErrSysctlNotPermitted: a setting could not be written (not root, a
// read-only /proc/sys in a container, a network namespace without it).
var ErrSysctlNotPermitted = errors.New("not permitted to write kernel settings")

// ApplySysctls writes plan below root (normally /proc/sys). The files are
// opened for writing without being created: whether that works is exactly
// the permission question (root, writable). It returns what was written
// and, for the first that could not be, an error wrapping
// ErrSysctlNotPermitted.
func ApplySysctls(root string, plan []SysctlChange) ([]SysctlChange, error) {
	var done []SysctlChange
	for _, c := range plan {
		f, err := os.OpenFile(filepath.Join(root, c.Path), os.O_WRONLY|os.O_TRUNC, 0)
		if err == nil {
			_, err = f.WriteString(strconv.Itoa(c.To) + "\n")
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return done, fmt.Errorf("%w: %s: %v", ErrSysctlNotPermitted, c.Key, unwrapPathError(err))
		}
		done = append(done, c)
	}
	return done, nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// applySYNSysctls is start's part of apply_sysctls; it returns the posture
// as it is afterwards, and a problem when writing was refused and
// on_mismatch is refuse.
func (s *Server) applySYNSysctls(cfg *config.Config, p SYNPosture) (SYNPosture, error) {
	f := &cfg.Security.SynFloodProtection
	plan := p.PlanSysctls(f)
	if !f.ApplySysctls || len(plan) == 0 {
		return p, nil
	}
	done, err := ApplySysctls(s.procSys, plan)
	for _, c := range done {
		s.log.Info("SYN flood posture: applied "+c.Key, "from", c.From, "to", c.To)
	}
	if err != nil {
		s.log.Warn("SYN flood posture: apply_sysctls could not write the kernel settings", "error", err.Error())
		if f.OnMismatch == "refuse" {
			return p, config.Problems{{File: cfg.File, Line: cfg.Line("security.syn_flood_protection.apply_sysctls"),
				Msg: fmt.Sprintf("apply_sysctls is true but %v, and on_mismatch is refuse (run as root, or set the sysctls on the host)", err)}}
		}
	}
	return ReadSYNPosture(s.procSys), nil
}
