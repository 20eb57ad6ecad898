// Package tracing is erpstream's OpenTelemetry tracing: spans from the HTTP request through Kafka
// (W3C trace context in record headers) to the processor's mapping, the projector's ClickHouse
// write and the outbound delivery. Exported by OTLP/HTTP when the standard OTEL_* variables name
// an endpoint; otherwise the global provider stays OpenTelemetry's no-op one and tracing costs
// nothing.
package tracing

import (
	"context"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracer is erpstream's tracer (the global provider's: no-op until Setup exports).
func Tracer() trace.Tracer { return otel.Tracer("github.com/erpstream/erpstream") }

// Enabled reports whether the environment asks for trace export: an OTLP endpoint is set, the
// SDK is not disabled and the traces exporter is not "none".
func Enabled() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(os.Getenv("OTEL_TRACES_EXPORTER"), "none") {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs an OTLP/HTTP exporter (configured by the standard OTEL_EXPORTER_OTLP_* variables,
// sending through client: erpstream's egress) and the W3C trace-context propagator, when Enabled.
// shutdown flushes what is buffered.
func Setup(ctx context.Context, services []string, client *http.Client) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if !Enabled() {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithHTTPClient(client))
	if err != nil {
		return nil, err
	}
	name := os.Getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = "erpstream"
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(name),
		semconv.ServiceVersion(version()), attrServices(services)))
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	exporting.Store(true)
	return func(ctx context.Context) error {
		exporting.Store(false)
		otel.SetTracerProvider(noop.NewTracerProvider())
		return tp.Shutdown(ctx)
	}, nil
}

var exporting atomic.Bool

// Exporting reports whether spans are exported: work done only for spans (collecting a batch's
// links) is skipped otherwise.
func Exporting() bool { return exporting.Load() }

// Links are links to the traces a batch's records carry, at most max of them.
func Links(recs []*kgo.Record, max int) []trace.Link {
	var out []trace.Link
	for _, r := range recs {
		if len(out) == max {
			break
		}
		if l, ok := Link(r); ok {
			out = append(out, l)
		}
	}
	return out
}

// headers carries trace context in a Kafka record's headers.
type headers struct{ r *kgo.Record }

func (h headers) Get(key string) string {
	for _, x := range h.r.Headers {
		if x.Key == key {
			return string(x.Value)
		}
	}
	return ""
}

func (h headers) Set(key, value string) {
	for i, x := range h.r.Headers {
		if x.Key == key {
			h.r.Headers[i].Value = []byte(value)
			return
		}
	}
	h.r.Headers = append(h.r.Headers, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

func (h headers) Keys() []string {
	out := make([]string, len(h.r.Headers))
	for i, x := range h.r.Headers {
		out[i] = x.Key
	}
	return out
}

// Inject writes ctx's trace context into the records' headers (traceparent, tracestate).
func Inject(ctx context.Context, recs ...*kgo.Record) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	p := otel.GetTextMapPropagator()
	for _, r := range recs {
		p.Inject(ctx, headers{r})
	}
}

// Extract returns ctx with the trace context a record carries.
func Extract(ctx context.Context, r *kgo.Record) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, headers{r})
}

// Link is a link to the span context a record carries (a batch spans many traces).
func Link(r *kgo.Record) (trace.Link, bool) {
	sc := trace.SpanContextFromContext(Extract(context.Background(), r))
	return trace.Link{SpanContext: sc}, sc.IsValid()
}

// HTTPCarrier carries trace context in HTTP headers.
func HTTPCarrier(h http.Header) propagation.TextMapCarrier { return propagation.HeaderCarrier(h) }
