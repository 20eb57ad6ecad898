// Package registrytest runs a registry on a test cluster.
package registrytest

import (
	"context"
	"testing"
	"time"

	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
)

// Start runs a registry on c until the test ends and waits until it is ready.
func Start(t testing.TB, c *kafkatest.Cluster) *registry.Registry {
	t.Helper()
	reg, err := registry.New(registry.Config{Topic: c.Topics.Config, Opts: c.Config.BaseOpts(kafkatest.Quiet()), Log: kafkatest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := reg.Run(ctx); err != nil {
			t.Errorf("registry: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		reg.Close()
	})
	select {
	case <-reg.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("registry not ready within 20s")
	}
	return reg
}
