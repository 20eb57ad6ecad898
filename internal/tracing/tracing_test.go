package tracing

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// A span's context travels in a record's headers and continues on the other side.
func TestRecordsCarryTheTrace(t *testing.T) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	ctx, parent := tp.Tracer("t").Start(context.Background(), "request")
	rec := &kgo.Record{Headers: []kgo.RecordHeader{{Key: "erp-org", Value: []byte("o")}}}
	Inject(ctx, rec)
	Inject(ctx, rec) // twice: the header is replaced, not repeated
	if len(rec.Headers) != 2 {
		t.Fatalf("headers %v", rec.Headers)
	}
	_, child := tp.Tracer("t").Start(Extract(context.Background(), rec), "map event")
	child.End()
	parent.End()
	if got, want := child.SpanContext().TraceID(), parent.SpanContext().TraceID(); got != want {
		t.Fatalf("child trace %s, want %s", got, want)
	}
	if l, ok := Link(rec); !ok || l.SpanContext.SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("link %v %v", l, ok)
	}
	// Without a span nothing is written.
	bare := &kgo.Record{}
	Inject(context.Background(), bare)
	if len(bare.Headers) != 0 || trace.SpanContextFromContext(Extract(context.Background(), bare)).IsValid() {
		t.Fatal("a record without a trace got one")
	}
}

func TestEnabledFollowsTheStandardVariables(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	if Enabled() {
		t.Fatal("enabled without an endpoint")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
	if !Enabled() {
		t.Fatal("not enabled with an endpoint")
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	if Enabled() {
		t.Fatal("enabled with OTEL_TRACES_EXPORTER=none")
	}
}
