package kafkax

import (
	"log/slog"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// ClientOpts are BaseOpts for a long-lived client whose Kafka metrics (franz-go's kprom: bytes,
// records and batches produced and fetched per topic, request latency, connects and errors per
// broker) are exported as erpstream_kafka_*{client_id="erpstream-<role>"}. Without
// Config.Metrics they are BaseOpts.
func (c Config) ClientOpts(log *slog.Logger, role string) []kgo.Opt {
	opts := c.BaseOpts(log)
	if c.Metrics == nil {
		return opts
	}
	label := clientLabels.take("erpstream-" + role)
	m := kprom.NewMetrics("erpstream_kafka", kprom.Registerer(c.Metrics), kprom.WithClientLabel(),
		kprom.FetchAndProduceDetail(kprom.ByTopic, kprom.Records, kprom.Batches, kprom.UncompressedBytes))
	return append(opts, kgo.ClientID(label), kgo.WithHooks(m, releaseLabel(label)))
}

// clientLabels keeps the client_id labels of live clients unique: kprom registers a client's
// collectors when it starts and unregisters them when it closes, and two live clients with one
// label would collide (a restarted session may start before its predecessor closed).
var clientLabels = &labels{live: map[string]bool{}}

type labels struct {
	mu   sync.Mutex
	live map[string]bool
}

func (l *labels) take(base string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	name := base
	for n := 2; l.live[name]; n++ {
		name = base + "-" + strconv.Itoa(n)
	}
	l.live[name] = true
	return name
}

type releaseLabel string

func (r releaseLabel) OnClientClosed(*kgo.Client) {
	clientLabels.mu.Lock()
	delete(clientLabels.live, string(r))
	clientLabels.mu.Unlock()
}

var _ kgo.HookClientClosed = releaseLabel("")
