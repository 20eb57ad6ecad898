// Package fileproxy serves GET /download: a signed link written into an entity by a
// file_proxy_url field fetches a document from the ERP's archive on demand, through a file_proxy
// use case's steps (templated requests through package egress), and streams it to the client.
package fileproxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/erpstream/erpstream/internal/secrets"
)

// Signer signs and verifies download links. The key of each org is derived from the deployment's
// secrets key and a key id; the key id travels in the link, so keys rotate by changing the id
// (links of the previous ids stay valid while they are listed).
type Signer struct {
	box      *secrets.Box
	keyID    string
	accepted map[string]bool
	ttl      time.Duration
	now      func() time.Time
}

// Query parameters the signature adds.
const (
	paramSignature = "sig"
	paramKeyID     = "kid"
	paramExpires   = "exp"
)

// ErrSignature is a link without a valid signature (SIGNATURE_VERIFICATION_FAILED).
var ErrSignature = errors.New("signature verification failed")

// NewSigner signs with keyID; previous lists further key ids verification accepts; ttl > 0 gives
// links an expiry.
func NewSigner(box *secrets.Box, keyID string, previous []string, ttl time.Duration) (*Signer, error) {
	if box == nil {
		return nil, secrets.ErrNoKey
	}
	if keyID == "" {
		keyID = "k1"
	}
	s := &Signer{box: box, keyID: keyID, accepted: map[string]bool{keyID: true}, ttl: ttl, now: time.Now}
	for _, k := range previous {
		if k = strings.TrimSpace(k); k != "" {
			s.accepted[k] = true
		}
	}
	return s, nil
}

func (s *Signer) key(kid, org string) ([]byte, error) {
	return s.box.Derive("file-proxy-link/" + kid + "/" + org)
}

// canonical is what is signed: every query parameter except the signature, sorted by name (then
// value) and encoded one way, so re-encoding a link on the way does not break it. The path is not
// part of it: a reverse proxy may serve /download under a prefix of its own.
func canonical(q url.Values) string {
	names := make([]string, 0, len(q))
	for k := range q {
		if k != paramSignature {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("erpstream-download")
	for _, k := range names {
		vals := append([]string(nil), q[k]...)
		sort.Strings(vals)
		for _, v := range vals {
			b.WriteString("\n" + url.QueryEscape(k) + "=" + url.QueryEscape(v))
		}
	}
	return b.String()
}

func mac(key []byte, msg string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Sign adds kid, exp (when links expire) and sig to a download link of org.
func (s *Signer) Sign(org, link string) string {
	u, err := url.Parse(link)
	if err != nil {
		return link
	}
	q := u.Query()
	q.Set(paramKeyID, s.keyID)
	if s.ttl > 0 {
		q.Set(paramExpires, strconv.FormatInt(s.now().Add(s.ttl).Unix(), 10))
	}
	key, err := s.key(s.keyID, org)
	if err != nil {
		return link
	}
	q.Set(paramSignature, mac(key, canonical(q)))
	u.RawQuery = q.Encode()
	return u.String()
}

// Verify checks a request's link: its key id is accepted, its signature matches under the org's
// key, and it has not expired. The org is the link's orgId.
func (s *Signer) Verify(q url.Values) error {
	org, kid, sig := q.Get("orgId"), q.Get(paramKeyID), q.Get(paramSignature)
	if org == "" || sig == "" || len(q[paramSignature]) != 1 || !s.accepted[kid] {
		return ErrSignature
	}
	key, err := s.key(kid, org)
	if err != nil {
		return ErrSignature
	}
	if !hmac.Equal([]byte(sig), []byte(mac(key, canonical(q)))) {
		return ErrSignature
	}
	if exp := q.Get(paramExpires); exp != "" {
		at, err := strconv.ParseInt(exp, 10, 64)
		if err != nil || s.now().Unix() > at {
			return fmt.Errorf("%w: the link expired", ErrSignature)
		}
	}
	return nil
}
