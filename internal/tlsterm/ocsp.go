package tlsterm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/crypto/ocsp"
)

// OCSP stapling (ocsp_stapling: true). For each file certificate that
// names an OCSP responder and whose chain holds its issuer, the response
// is fetched, checked (signed for this certificate by its issuer or a
// responder the issuer delegated to, status good, current) and stapled.
// It is refreshed at half its validity, so a responder that is down for a
// while does not cost the staple; when the staple runs out before the
// responder answers again, handshakes go on without one.

// Bounds of OCSP traffic and retries.
const (
	ocspTimeout     = 10 * time.Second
	ocspMaxResponse = 64 << 10
	ocspRetry       = time.Minute // after a failed fetch
	ocspNoNext      = time.Hour   // refresh of a response without NextUpdate
	ocspNoResponder = 24 * time.Hour
	ocspClockSkew   = 5 * time.Minute
)

var ocspClient = &http.Client{Timeout: ocspTimeout}

// ocspDue drops staples that ran out and starts the fetches that are due.
func (t *Terminator) ocspDue(ctx context.Context, st *state) {
	now := t.opts.Now()
	for _, s := range st.order {
		if s.isACME() {
			continue
		}
		s.mu.Lock()
		lc := s.cur.Load()
		if len(lc.cert.OCSPStaple) > 0 && !lc.stapleUntil.IsZero() && now.After(lc.stapleUntil) {
			s.cur.Store(lc.withStaple(nil, time.Time{}))
			t.opts.Log.Warn("tls: OCSP staple expired before it could be refreshed; serving without one",
				"listener", st.listener, "certificate", s.name)
		}
		start := !s.ocspBusy && !now.Before(s.ocspDue)
		if start {
			s.ocspBusy = true
		}
		s.mu.Unlock()
		if start {
			t.done.Add(1)
			go t.fetchOCSP(ctx, st.listener, s)
		}
	}
}

// withStaple is a copy of lc with staple.
func (lc *loadedCert) withStaple(staple []byte, until time.Time) *loadedCert {
	c := *lc.cert
	c.OCSPStaple = staple
	n := *lc
	n.cert, n.stapleUntil = &c, until
	return &n
}

func (t *Terminator) fetchOCSP(ctx context.Context, listener string, s *certSlot) {
	defer t.done.Done()
	lc := s.cur.Load()
	staple, resp, err := t.queryOCSP(ctx, lc)
	now := t.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ocspBusy = false
	cur := s.cur.Load()
	if cur.hash != lc.hash {
		return // the files changed meanwhile: the new certificate is fetched for
	}
	switch {
	case errors.Is(err, errNoResponder):
		s.ocspDue = now.Add(ocspNoResponder)
		return
	case err != nil:
		s.ocspDue = now.Add(ocspRetry)
		if ctx.Err() == nil {
			t.opts.Log.Warn("tls: OCSP fetch failed; serving without a fresh staple", "listener", listener,
				"certificate", s.name, "responder", lc.cert.Leaf.OCSPServer[0], "error", err.Error(),
				"stapled", len(cur.cert.OCSPStaple) > 0)
		}
		return
	}
	s.cur.Store(cur.withStaple(staple, resp.NextUpdate))
	if resp.NextUpdate.IsZero() {
		s.ocspDue = now.Add(ocspNoNext)
	} else {
		s.ocspDue = resp.ThisUpdate.Add(resp.NextUpdate.Sub(resp.ThisUpdate) / 2)
	}
	t.opts.Log.Debug("tls: OCSP response stapled", "listener", listener, "certificate", s.name,
		"this_update", resp.ThisUpdate, "next_update", resp.NextUpdate)
}

var errNoResponder = errors.New("no OCSP responder or no issuer certificate")

// queryOCSP asks the certificate's responder and returns a response that
// may be stapled, or why none may.
func (t *Terminator) queryOCSP(ctx context.Context, lc *loadedCert) ([]byte, *ocsp.Response, error) {
	leaf := lc.cert.Leaf
	if len(leaf.OCSPServer) == 0 || lc.issuer == nil {
		return nil, nil, errNoResponder
	}
	reqDER, err := ocsp.CreateRequest(leaf, lc.issuer, nil)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, ocspTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, leaf.OCSPServer[0], bytes.NewReader(reqDER))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	req.Header.Set("Accept", "application/ocsp-response")
	hr, err := ocspClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer hr.Body.Close()
	if hr.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("responder answered %s", hr.Status)
	}
	body, err := io.ReadAll(io.LimitReader(hr.Body, ocspMaxResponse+1))
	if err != nil {
		return nil, nil, err
	}
	if len(body) > ocspMaxResponse {
		return nil, nil, errors.New("response larger than 64 KiB")
	}
	// ParseResponseForCert checks the signature: by the issuer, or by a
	// responder certificate the issuer signed for OCSP signing.
	resp, err := ocsp.ParseResponseForCert(body, leaf, lc.issuer)
	if err != nil {
		return nil, nil, fmt.Errorf("response refused: %w", err)
	}
	now := t.opts.Now()
	switch {
	case resp.Status != ocsp.Good:
		return nil, nil, fmt.Errorf("response refused: status %s", ocspStatus(resp.Status))
	case resp.ThisUpdate.After(now.Add(ocspClockSkew)):
		return nil, nil, fmt.Errorf("response refused: issued in the future (%s)", resp.ThisUpdate.UTC().Format(time.RFC3339))
	case !resp.NextUpdate.IsZero() && !now.Before(resp.NextUpdate):
		return nil, nil, fmt.Errorf("response refused: stale since %s", resp.NextUpdate.UTC().Format(time.RFC3339))
	}
	return body, resp, nil
}

func ocspStatus(s int) string {
	switch s {
	case ocsp.Good:
		return "good"
	case ocsp.Revoked:
		return "revoked"
	}
	return "unknown"
}
