// Package tlsfiles builds client TLS configurations from PEM files, the way managed Kafka and
// ClickHouse services hand out credentials: a CA to trust (else the system roots), and optionally
// a client certificate and key for mutual TLS.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Files names the PEM files of a client TLS configuration; all are optional.
type Files struct {
	CA, Cert, Key string
	// ServerName overrides the name the server's certificate is checked against.
	ServerName string
}

// Config loads the files. TLS 1.2 at least; the server's certificate is always verified.
func (f Files) Config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate", f.CA)
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.Cert != "" && f.Key != "":
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case f.Cert != "" || f.Key != "":
		return nil, errors.New("a client certificate needs both the certificate and the key file")
	}
	return cfg, nil
}
