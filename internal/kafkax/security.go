package kafkax

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/erpstream/erpstream/internal/tlsfiles"
)

// Security is how erpstream authenticates to a managed Kafka: TLS (own CA, client certificates)
// and SASL, all through franz-go's own packages. The zero value is plaintext without SASL.
type Security struct {
	TLS bool
	// TLSFiles: CA (else the system roots), client certificate and key (mutual TLS).
	TLSFiles tlsfiles.Files
	// Mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM ("" none).
	Mechanism          string
	Username, Password string
	// OAuthTokenFile holds the OAUTHBEARER token, read at every authentication (a sidecar or the
	// platform's workload identity keeps it fresh).
	OAuthTokenFile string
}

// Mechanisms erpstream speaks.
var Mechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "AWS_MSK_IAM"}

// build returns the TLS configuration (nil: plaintext) and the SASL mechanism (nil: none).
func (s Security) build() (*tls.Config, sasl.Mechanism, error) {
	var tc *tls.Config
	if s.TLS || s.TLSFiles != (tlsfiles.Files{}) {
		var err error
		if tc, err = s.TLSFiles.Config(); err != nil {
			return nil, nil, fmt.Errorf("kafka TLS: %w", err)
		}
	}
	user := func(ctx context.Context) (string, string, error) {
		if s.Username == "" || s.Password == "" {
			return "", "", fmt.Errorf("kafka SASL %s: KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required", s.Mechanism)
		}
		return s.Username, s.Password, nil
	}
	var m sasl.Mechanism
	switch strings.ToUpper(s.Mechanism) {
	case "":
	case "PLAIN":
		m = plain.Plain(func(ctx context.Context) (plain.Auth, error) {
			u, p, err := user(ctx)
			return plain.Auth{User: u, Pass: p}, err
		})
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		fn := func(ctx context.Context) (scram.Auth, error) {
			u, p, err := user(ctx)
			return scram.Auth{User: u, Pass: p}, err
		}
		m = scram.Sha256(fn)
		if strings.HasSuffix(strings.ToUpper(s.Mechanism), "512") {
			m = scram.Sha512(fn)
		}
	case "OAUTHBEARER":
		if s.OAuthTokenFile == "" {
			return nil, nil, errors.New("kafka SASL OAUTHBEARER: KAFKA_SASL_OAUTH_TOKEN_FILE is required")
		}
		m = oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			b, err := os.ReadFile(s.OAuthTokenFile)
			if err != nil {
				return oauth.Auth{}, fmt.Errorf("OAUTHBEARER token file: %w", err)
			}
			return oauth.Auth{Token: strings.TrimSpace(string(b))}, nil
		})
	case "AWS_MSK_IAM":
		m = aws.ManagedStreamingIAM(func(context.Context) (aws.Auth, error) {
			a := aws.Auth{AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"), SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
				SessionToken: os.Getenv("AWS_SESSION_TOKEN")}
			if a.AccessKey == "" || a.SecretKey == "" {
				return a, errors.New("AWS_MSK_IAM: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are required")
			}
			return a, nil
		})
	default:
		return nil, nil, fmt.Errorf("KAFKA_SASL_MECHANISM %q: one of %s", s.Mechanism, strings.Join(Mechanisms, ", "))
	}
	return tc, m, nil
}

// Validate loads the files and checks the mechanism, so a wrong setting stops start-up with its
// name instead of failing every connection.
func (s Security) Validate() error {
	_, _, err := s.build()
	return err
}
