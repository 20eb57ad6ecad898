//go:build integration

package app_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/internal/chx"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/tlsfiles"
)

// secureEnv reads where scripts/test.sh started the secure listeners.
func secureEnv(t *testing.T) (kafkaAddr, kafkaTLS, chAddr, chTLS, chPassword string) {
	t.Helper()
	for _, k := range []string{"KAFKA_SECURE_BROKERS", "KAFKA_TLS_DIR", "CLICKHOUSE_SECURE_ADDR", "CLICKHOUSE_TLS_DIR", "CLICKHOUSE_TEST_PASSWORD"} {
		if os.Getenv(k) == "" {
			t.Fatalf("%s is not set: run the integration tests with `make test` (scripts/test.sh starts the secure listeners)", k)
		}
	}
	return os.Getenv("KAFKA_SECURE_BROKERS"), os.Getenv("KAFKA_TLS_DIR"), os.Getenv("CLICKHOUSE_SECURE_ADDR"),
		os.Getenv("CLICKHOUSE_TLS_DIR"), os.Getenv("CLICKHOUSE_TEST_PASSWORD")
}

// The whole pipeline over Kafka's SASL_SSL listener (own CA, client certificate, SCRAM-SHA-512)
// and ClickHouse's secure native port with a password, as an operator configures a managed Kafka
// and ClickHouse Cloud; wrong credentials are refused.
func TestIntegrationSecureConnections(t *testing.T) {
	kafkaAddr, kafkaTLS, chAddr, chTLS, chPassword := secureEnv(t)
	e := apptest.New(t)
	ctx := context.Background()

	// The SCRAM user, created as an operator would, through the admin API (here on the plaintext listener).
	admin, err := kgo.NewClient(kgo.SeedBrokers(e.Kafka.Brokers...))
	apptest.Must(t, err)
	defer admin.Close()
	user := "erpstream-" + e.Kafka.TopicPrefix
	if _, err := kadm.NewClient(admin).AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: user, Mechanism: kadm.ScramSha512,
		Iterations: 4096, Password: "scram-secret"}}); err != nil {
		t.Fatalf("create SCRAM user: %v", err)
	}
	files := tlsfiles.Files{CA: filepath.Join(kafkaTLS, "ca.pem"), Cert: filepath.Join(kafkaTLS, "client.pem"), Key: filepath.Join(kafkaTLS, "client.key")}
	secure := kafkax.Security{TLS: true, TLSFiles: files, Mechanism: "SCRAM-SHA-512", Username: user, Password: "scram-secret"}
	apptest.Must(t, secure.Validate())

	ping := func(sec kafkax.Security) error {
		cfg := kafkax.Config{Brokers: []string{kafkaAddr}, Security: sec}
		cl, err := kgo.NewClient(cfg.BaseOpts(e.Log)...)
		if err != nil {
			return err
		}
		defer cl.Close()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return cl.Ping(pctx)
	}
	// SCRAM credentials become usable once the controller has applied them.
	apptest.WaitFor(t, func() bool { return ping(secure) == nil })
	wrong := secure
	wrong.Password = "not-the-password"
	noCert := secure
	noCert.TLSFiles.Cert, noCert.TLSFiles.Key = "", ""
	plain := secure
	plain.Mechanism, plain.Username, plain.Password = "PLAIN", "erpstream-plain", "plain-secret"
	for name, c := range map[string]struct {
		sec  kafkax.Security
		want bool
	}{"wrong SCRAM password": {wrong, false}, "no client certificate": {noCert, false}, "SASL/PLAIN": {plain, true}} {
		if err := ping(c.sec); (err == nil) != c.want {
			t.Fatalf("%s: ping error %v", name, err)
		}
	}

	chTLSConfig, err := tlsfiles.Files{CA: filepath.Join(chTLS, "ca.pem")}.Config()
	apptest.Must(t, err)
	e.Kafka.Brokers, e.Kafka.Security = []string{kafkaAddr}, secure
	e.CH = chx.Config{Addr: chAddr, Database: e.CH.Database, User: "erpstream", Password: chPassword, TLS: chTLSConfig}
	bad := e.CH
	bad.Password = "wrong"
	if conn, err := chx.Open(ctx, bad); err == nil {
		conn.Close()
		t.Fatal("ClickHouse accepted a wrong password")
	}
	e.Start()
	t.Logf("pipeline running over Kafka SASL_SSL %s (SCRAM-SHA-512, client certificate) and ClickHouse TLS %s (user erpstream)", kafkaAddr, chAddr)
	id := e.CreateIntegration(apptest.IntegrationBody)
	var events []string
	for i := 0; i < 50; i++ {
		events = append(events, apptest.CustomerEvent(i, "Sec", fmt.Sprintf("sec-%d", i)))
	}
	e.Send(id, "secure", events)
	apptest.WaitFor(t, func() bool {
		return e.Scalar(`SELECT count() FROM entities FINAL WHERE org_id = 'dev-org' AND integration_id = ? AND deleted = 0`, id) == 50
	})
	if st := e.WaitStats(id, 50); st["success_count"] != 50.0 {
		t.Fatalf("stats over the secure connections: %v", st)
	}
}
