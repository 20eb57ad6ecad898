package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/tlsfiles"
)

// secureConnections reads the TLS and SASL settings of Kafka and ClickHouse (docs/deployment.md):
//
//	KAFKA_TLS=1, KAFKA_TLS_CA_FILE, KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE, KAFKA_TLS_SERVER_NAME
//	KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER, AWS_MSK_IAM),
//	KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SASL_OAUTH_TOKEN_FILE
//	CLICKHOUSE_TLS=1, CLICKHOUSE_TLS_CA_FILE, CLICKHOUSE_TLS_CERT_FILE, CLICKHOUSE_TLS_KEY_FILE,
//	CLICKHOUSE_TLS_SERVER_NAME
//
// A TLS file setting implies TLS. Broken settings stop start-up with their name.
func secureConnections(cfg *app.Config) error {
	kafkaTLS, err := boolEnv("KAFKA_TLS")
	if err != nil {
		return err
	}
	cfg.Kafka.Security = kafkax.Security{
		TLS:            kafkaTLS,
		TLSFiles:       tlsFiles("KAFKA_TLS"),
		Mechanism:      os.Getenv("KAFKA_SASL_MECHANISM"),
		Username:       os.Getenv("KAFKA_SASL_USERNAME"),
		Password:       os.Getenv("KAFKA_SASL_PASSWORD"),
		OAuthTokenFile: os.Getenv("KAFKA_SASL_OAUTH_TOKEN_FILE"),
	}
	if err := cfg.Kafka.Security.Validate(); err != nil {
		return err
	}
	chTLS, err := boolEnv("CLICKHOUSE_TLS")
	if err != nil {
		return err
	}
	if files := tlsFiles("CLICKHOUSE_TLS"); chTLS || files != (tlsfiles.Files{}) {
		if cfg.ClickHouse.TLS, err = files.Config(); err != nil {
			return fmt.Errorf("clickhouse TLS: %w", err)
		}
	}
	return nil
}

func tlsFiles(prefix string) tlsfiles.Files {
	return tlsfiles.Files{CA: os.Getenv(prefix + "_CA_FILE"), Cert: os.Getenv(prefix + "_CERT_FILE"),
		Key: os.Getenv(prefix + "_KEY_FILE"), ServerName: os.Getenv(prefix + "_SERVER_NAME")}
}

// retryDelays reads ERPSTREAM_OUTBOUND_RETRY_DELAYS: one Go duration per retry topic, increasing
// ("10s,1m,10m,1h,4h" is the default schedule).
func retryDelays(v string) ([]time.Duration, error) {
	parts := strings.Split(v, ",")
	if len(parts) != len(kafkax.OutboundRetryDelays) {
		return nil, fmt.Errorf("ERPSTREAM_OUTBOUND_RETRY_DELAYS: %d durations, one per retry topic (like 10s,1m,10m,1h,4h)", len(kafkax.OutboundRetryDelays))
	}
	var out []time.Duration
	for i, p := range parts {
		d, err := time.ParseDuration(strings.TrimSpace(p))
		if err != nil || d <= 0 || d > 24*time.Hour || (i > 0 && d < out[i-1]) {
			return nil, fmt.Errorf("ERPSTREAM_OUTBOUND_RETRY_DELAYS: %q: positive durations up to 24h, each at least the one before", p)
		}
		out = append(out, d)
	}
	return out, nil
}
