package outbound

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks (standardwebhooks.com) headers.
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
)

// signingKey is the HMAC key of a secret: a "whsec_" secret is base64 of the key (the Standard
// Webhooks form); any other string is used as it is.
func signingKey(secret string) []byte {
	if rest, ok := strings.CutPrefix(secret, "whsec_"); ok {
		if k, err := base64.StdEncoding.DecodeString(rest); err == nil {
			return k
		}
	}
	return []byte(secret)
}

// Sign returns the webhook-signature value for a message: "v1," and the base64 HMAC-SHA256 of
// "<id>.<timestamp>.<body>".
func Sign(secret, id string, at time.Time, body []byte) string {
	mac := hmac.New(sha256.New, signingKey(secret))
	mac.Write([]byte(id + "." + strconv.FormatInt(at.Unix(), 10) + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Verify checks a request's Standard Webhooks headers against secret and a tolerance for the
// timestamp (receivers drop replays older than it); for tests and receivers written in Go.
func Verify(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) bool {
	ts, err := strconv.ParseInt(h.Get(HeaderWebhookTimestamp), 10, 64)
	if err != nil {
		return false
	}
	at := time.Unix(ts, 0)
	if now.Sub(at) > tolerance || at.Sub(now) > tolerance {
		return false
	}
	want := Sign(secret, h.Get(HeaderWebhookID), at, body)
	for _, sig := range strings.Fields(h.Get(HeaderWebhookSignature)) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return true
		}
	}
	return false
}

// setSignature sets the three headers; without a secret the message is sent unsigned (id and
// timestamp only).
func setSignature(h http.Header, secret, id string, at time.Time, body []byte) {
	h.Set(HeaderWebhookID, id)
	h.Set(HeaderWebhookTimestamp, strconv.FormatInt(at.Unix(), 10))
	if secret != "" {
		h.Set(HeaderWebhookSignature, Sign(secret, id, at, body))
	}
}
