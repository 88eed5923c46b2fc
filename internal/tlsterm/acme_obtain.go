package tlsterm

// One ACME order: account, authorizations by the configured challenges,
// finalisation with a fresh key, storage.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
)

// acmeAttemptTimeout bounds one obtain attempt, CA polling included.
const acmeAttemptTimeout = 5 * time.Minute

// obtain gets a new certificate for m from its CA and serves it.
func (a *ACME) obtain(ctx context.Context, m *acmeCert, renewal bool) error {
	ctx, cancel := context.WithTimeout(ctx, acmeAttemptTimeout)
	defer cancel()
	s := m.spec.Load()
	old := m.current.Load()
	cl, release, err := a.accounts.client(ctx, a, s)
	if err != nil {
		return err
	}
	defer release()
	started := time.Now()
	order, err := cl.AuthorizeOrder(ctx, acme.DomainIDs(s.domains...))
	if err != nil {
		a.accounts.forgetIfGone(s, err)
		return fmt.Errorf("new order: %w", err)
	}
	var used []string
	for _, zurl := range order.AuthzURLs {
		typ, err := a.authorize(ctx, cl, m, s, zurl)
		if err != nil {
			return err
		}
		if typ != "" && !slices.Contains(used, typ) {
			used = append(used, typ)
		}
	}
	if order, err = cl.WaitOrder(ctx, order.URI); err != nil {
		return fmt.Errorf("order: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: s.domains}, key)
	if err != nil {
		return err
	}
	der, _, err := cl.CreateOrderCert(ctx, order.FinalizeURL, csr, true)
	if err != nil {
		return fmt.Errorf("finalize: %w", err)
	}
	c, err := acmeCertificate(der, key, s.domains, a.opts.Now())
	if err != nil {
		return err
	}
	attrs := []any{"certificate", s.refs[0].name, "domains", s.domains, "ca", s.directory,
		"challenges", used, "serial", acmeSerial(c.Leaf), "not_after", c.Leaf.NotAfter,
		"took_ms", time.Since(started).Milliseconds()}
	// Served even if it cannot be stored: a restart then obtains it again.
	if err := acmeStoreCert(m.file, c); err != nil {
		a.log.Error("acme certificate could not be stored", "certificate", s.refs[0].name, "file", m.file, "error", err.Error())
	}
	m.current.Store(c)
	if old != nil && renewal {
		a.log.Info("acme certificate renewed", append(attrs, "old_serial", acmeSerial(old.Leaf))...)
	} else {
		a.log.Info("acme certificate obtained", attrs...)
	}
	return nil
}

// authorize has one authorization validated, by the first configured
// challenge the CA offers; after a failed validation the next attempt
// prefers the next one. It returns the challenge type used ("" for an
// authorization the CA already holds valid).
func (a *ACME) authorize(ctx context.Context, cl *acme.Client, m *acmeCert, s *acmeSpec, zurl string) (string, error) {
	z, err := cl.GetAuthorization(ctx, zurl)
	if err != nil {
		return "", fmt.Errorf("authorization: %w", err)
	}
	domain := z.Identifier.Value
	switch z.Status {
	case acme.StatusValid:
		return "", nil
	case acme.StatusPending:
	default:
		return "", fmt.Errorf("authorization of %s is %s", domain, z.Status)
	}
	var chal *acme.Challenge
	for i := range s.challenges {
		typ := s.challenges[(m.challengeTurn+i)%len(s.challenges)]
		if j := slices.IndexFunc(z.Challenges, func(c *acme.Challenge) bool { return c.Type == typ }); j >= 0 {
			chal = z.Challenges[j]
			break
		}
	}
	if chal == nil {
		var offered []string
		for _, c := range z.Challenges {
			offered = append(offered, c.Type)
		}
		return "", fmt.Errorf("the CA offers %v for %s, none of the configured challenges %v", offered, domain, s.challenges)
	}
	switch chal.Type {
	case acmeHTTP01:
		ka, err := cl.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return "", err
		}
		a.chal.putHTTP(chal.Token, ka)
		defer a.chal.deleteHTTP(chal.Token)
	case acmeTLSALPN01:
		cert, err := cl.TLSALPN01ChallengeCert(chal.Token, domain)
		if err != nil {
			return "", err
		}
		a.chal.putALPN(domain, &cert)
		defer a.chal.deleteALPN(domain)
	}
	if _, err := cl.Accept(ctx, chal); err != nil {
		return chal.Type, fmt.Errorf("accepting %s for %s: %w", chal.Type, domain, err)
	}
	if _, err := cl.WaitAuthorization(ctx, z.URI); err != nil {
		m.challengeTurn++
		return chal.Type, fmt.Errorf("%s validation of %s: %w", chal.Type, domain, err)
	}
	return chal.Type, nil
}

// acmeCertificate checks what the CA issued (the key is ours, the names
// are all there, it is valid now) and makes it a tls.Certificate.
func acmeCertificate(der [][]byte, key *ecdsa.PrivateKey, domains []string, now time.Time) (*tls.Certificate, error) {
	if len(der) == 0 {
		return nil, errors.New("the CA returned no certificate")
	}
	leaf, err := x509.ParseCertificate(der[0])
	if err != nil {
		return nil, fmt.Errorf("the CA's certificate: %w", err)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("the CA's certificate is not for the key it was asked to certify")
	}
	if !acmeCovers(leaf, domains) {
		return nil, fmt.Errorf("the CA's certificate names %v, not all of %v", leaf.DNSNames, domains)
	}
	if now.Before(leaf.NotBefore.Add(-time.Hour)) || !now.Before(leaf.NotAfter) {
		return nil, fmt.Errorf("the CA's certificate is valid from %s to %s, not now", leaf.NotBefore, leaf.NotAfter)
	}
	return &tls.Certificate{Certificate: der, PrivateKey: key, Leaf: leaf}, nil
}

// acmeAccounts holds one registered client per CA, account email and
// trust; the account key persists, the registration is looked up again
// (by key) after a restart.
type acmeAccounts struct {
	mu sync.Mutex
	m  map[string]*acmeAccount
}

type acmeAccount struct {
	mu     sync.Mutex
	client *acme.Client // nil until registered
	// turn lets one order at a time run on the account, so that many
	// certificates due together (a first start) reach the CA one by one.
	turn chan struct{}
}

func acmeAccountKey(s *acmeSpec) string {
	return s.directory + "\x00" + s.email + "\x00" + s.caFile + "\x00" + s.caSum
}

// client waits for the account's turn, then returns its registered
// client (registering first, which finds an existing account for the
// stored key) and the function that ends the turn.
func (as *acmeAccounts) client(ctx context.Context, a *ACME, s *acmeSpec) (*acme.Client, func(), error) {
	as.mu.Lock()
	if as.m == nil {
		as.m = map[string]*acmeAccount{}
	}
	acct := as.m[acmeAccountKey(s)]
	if acct == nil {
		acct = &acmeAccount{turn: make(chan struct{}, 1)}
		as.m[acmeAccountKey(s)] = acct
	}
	as.mu.Unlock()

	select {
	case acct.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	release := func() { <-acct.turn }
	cl, err := acct.register(ctx, a, s)
	if err != nil {
		release()
		return nil, nil, err
	}
	return cl, release, nil
}

func (acct *acmeAccount) register(ctx context.Context, a *ACME, s *acmeSpec) (*acme.Client, error) {
	acct.mu.Lock()
	defer acct.mu.Unlock()
	if acct.client != nil {
		return acct.client, nil
	}
	file := a.accountFile(s)
	key, created, err := acmeLoadAccountKey(file)
	if err != nil {
		return nil, fmt.Errorf("account key: %w", err)
	}
	if created {
		a.log.Info("acme account key created", "ca", s.directory, "file", file)
	}
	cl := &acme.Client{
		Key:          key,
		HTTPClient:   acmeHTTPClient(s.roots),
		DirectoryURL: s.directory,
		UserAgent:    "rampart",
		RetryBackoff: acmeRequestBackoff,
	}
	var contact []string
	if s.email != "" {
		contact = []string{"mailto:" + s.email}
	}
	// The CA's terms of service are accepted: configuring an ACME CA is
	// the operator's agreement to them.
	_, err = cl.Register(ctx, &acme.Account{Contact: contact}, acme.AcceptTOS)
	switch {
	case err == nil:
		a.log.Info("acme account registered", "ca", s.directory, "email", s.email)
	case errors.Is(err, acme.ErrAccountAlreadyExists):
	default:
		return nil, fmt.Errorf("account registration: %w", err)
	}
	acct.client = cl
	return cl, nil
}

// forgetIfGone drops a registration the CA no longer knows (a CA that
// lost its state, as pebble does on restart), so that the next attempt
// registers again with the same key.
func (as *acmeAccounts) forgetIfGone(s *acmeSpec, err error) {
	var ae *acme.Error
	if !errors.As(err, &ae) || !strings.HasSuffix(ae.ProblemType, ":accountDoesNotExist") {
		return
	}
	as.mu.Lock()
	acct := as.m[acmeAccountKey(s)]
	as.mu.Unlock()
	if acct != nil {
		acct.mu.Lock()
		acct.client = nil
		acct.mu.Unlock()
	}
}

// acmeHTTPClient talks to a CA, trusting roots (the ca_certificate) or,
// when nil, the system roots.
func acmeHTTPClient(roots *x509.CertPool) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: 10 * time.Second,
			IdleConnTimeout:     90 * time.Second,
			MaxIdleConnsPerHost: 2,
			ForceAttemptHTTP2:   true,
		},
	}
}

// acmeRequestBackoff retries one failed request to the CA (a bad nonce,
// a 5xx) a few times, quickly; a rate limit, or a Retry-After longer than
// a few seconds, ends the attempt instead, so that the renewal loop waits
// for as long as the CA asks rather than a request holding on.
func acmeRequestBackoff(n int, _ *http.Request, resp *http.Response) time.Duration {
	if n > 3 || resp == nil || resp.StatusCode == http.StatusTooManyRequests {
		return 0
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if secs, err := strconv.Atoi(ra); err != nil || secs > 5 {
			return 0
		} else if secs > 0 {
			return time.Duration(secs) * time.Second
		}
	}
	return time.Duration(n) * 250 * time.Millisecond
}

// acmeChallenges are the answers to pending validations: HTTP-01 key
// authorizations by token, TLS-ALPN-01 certificates by domain.
type acmeChallenges struct {
	mu   sync.RWMutex
	http map[string]string
	alpn map[string]*tls.Certificate
}

func (c *acmeChallenges) putHTTP(token, keyAuth string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.http == nil {
		c.http = map[string]string{}
	}
	c.http[token] = keyAuth
}

func (c *acmeChallenges) deleteHTTP(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.http, token)
}

func (c *acmeChallenges) httpResponse(token string) (string, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ka, ok := c.http[token]
	return ka, ok
}

func (c *acmeChallenges) putALPN(domain string, cert *tls.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.alpn == nil {
		c.alpn = map[string]*tls.Certificate{}
	}
	c.alpn[domain] = cert
}

func (c *acmeChallenges) deleteALPN(domain string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.alpn, domain)
}

func (c *acmeChallenges) alpnCert(domain string) *tls.Certificate {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.alpn[domain]
}
