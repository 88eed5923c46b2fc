package admin

import (
	"net/http"

	"github.com/rampart-proxy/rampart/internal/tlsterm"
)

// CertificateSource is implemented by instances with https listeners
// (*server.Server); an Instance without it has no certificates to show.
type CertificateSource interface {
	// Certificates describes every https listener's certificates.
	Certificates() []tlsterm.CertInfo
}

// certificates serves GET /api/v1/certificates: name, SANs, issuer,
// not_after, days left and source (file or ACME) of every certificate.
func (a *API) certificates(w http.ResponseWriter, r *http.Request) {
	list := []tlsterm.CertInfo{}
	if cs, ok := a.inst.(CertificateSource); ok {
		if got := cs.Certificates(); got != nil {
			list = got
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"certificates": list})
}
