package proxy

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/rampart-proxy/rampart/internal/config"
	"github.com/rampart-proxy/rampart/internal/fsutil"
)

// overrides are the operator's runtime changes to pool membership and
// backend states. They are kept apart from the config file and re-applied
// on top of it at every start and reload, so that editing the file never
// silently returns a quarantined backend to rotation.
type overrides struct {
	Pools map[string]*poolOverrides `json:"pools"`
}

type poolOverrides struct {
	// Registered are backends added through the API.
	Registered []config.Backend `json:"registered,omitempty"`
	// Deregistered are config backends removed through the API.
	Deregistered []string `json:"deregistered,omitempty"`
	// States holds non-active operator states (draining, quarantined) by id.
	States map[string]State `json:"states,omitempty"`
	// QuarantinedAt is the address of each backend quarantined through the
	// API, by id: a backend whose id changed in the file, or one registered
	// under a new id, at a quarantined address stays out of rotation.
	QuarantinedAt map[string]string `json:"quarantined_at,omitempty"`
}

func (po *poolOverrides) quarantineAddress(id, address string) {
	if po.QuarantinedAt == nil {
		po.QuarantinedAt = map[string]string{}
	}
	po.QuarantinedAt[id] = addressKey(address)
}

// releaseAddress forgets every quarantine of address, whatever its id.
func (po *poolOverrides) releaseAddress(address string) {
	k := addressKey(address)
	for id, a := range po.QuarantinedAt {
		if a == k {
			delete(po.QuarantinedAt, id)
		}
	}
}

// addressKey writes an IP address with its port one way ("[::1]:80" and
// "[0::1]:80" are one backend); a host name stays as it is.
func addressKey(address string) string {
	if ap, err := netip.ParseAddrPort(address); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
	}
	return address
}

func (o *overrides) pool(name string) *poolOverrides {
	if o.Pools == nil {
		o.Pools = map[string]*poolOverrides{}
	}
	po := o.Pools[name]
	if po == nil {
		po = &poolOverrides{}
		o.Pools[name] = po
	}
	if po.States == nil {
		po.States = map[string]State{}
	}
	return po
}

// stateFile persists overrides with write-to-temp, fsync, rename and a
// directory fsync: once an API call is acknowledged, a crash or kill -9
// cannot lose it or leave a torn file behind.
type stateFile struct {
	path string
}

func (s stateFile) load() (*overrides, error) {
	o := &overrides{}
	data, err := os.ReadFile(s.path)
	if os.IsNotExist(err) {
		return o, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, o); err != nil {
		// Refuse to start rather than forget a quarantine.
		return nil, fmt.Errorf("%s is corrupt (%v); fix or remove it deliberately", s.path, err)
	}
	return o, nil
}

func (s stateFile) save(o *overrides) error {
	data, err := json.MarshalIndent(o, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(s.path, ".backends-*.json", data)
}
