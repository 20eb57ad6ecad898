// Package logctx carries a request's request id and correlation id in its context and adds them
// to every log line written with that context (slog's *Context methods), so an operator can
// follow one request, and one business operation, through the log.
package logctx

import (
	"context"
	"log/slog"
)

type key int

const (
	requestIDKey key = iota
	correlationIDKey
)

// WithRequestID returns ctx carrying a request id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// WithCorrelationID returns ctx carrying a correlation id.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationIDKey, id)
}

// RequestID is ctx's request id ("" when it has none).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// CorrelationID is ctx's correlation id ("" when it has none).
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationIDKey).(string)
	return id
}

// Handler adds request_id and correlation_id from the record's context to what next writes.
type Handler struct{ Next slog.Handler }

func (h Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.Next.Enabled(ctx, l) }

func (h Handler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if id := RequestID(ctx); id != "" {
			r.AddAttrs(slog.String("request_id", id))
		}
		if id := CorrelationID(ctx); id != "" {
			r.AddAttrs(slog.String("correlation_id", id))
		}
	}
	return h.Next.Handle(ctx, r)
}

func (h Handler) WithAttrs(attrs []slog.Attr) slog.Handler { return Handler{h.Next.WithAttrs(attrs)} }
func (h Handler) WithGroup(name string) slog.Handler       { return Handler{h.Next.WithGroup(name)} }
