// Package httpapi holds what every HTTP service of erpstream shares: the error shape of the
// ERP Integration API (ErrorResponseBase), bearer authentication and request limits.
package httpapi

import (
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/logctx"
	"github.com/erpstream/erpstream/internal/tracing"
)

// Error codes used across the API.
const (
	CodeValidation          = "VALIDATION_ERROR"
	CodeUnauthorized        = "UNAUTHORIZED"
	CodeForbidden           = "FORBIDDEN"
	CodeNotFound            = "NOT_FOUND"
	CodeIntegrationNotFound = "INTEGRATION_NOT_FOUND"
	CodeUseCaseNotFound     = "USE_CASE_NOT_FOUND"
	CodeConflict            = "CONFLICT"
	CodePayloadTooLarge     = "PAYLOAD_TOO_LARGE"
	CodeUnavailable         = "SERVICE_UNAVAILABLE"
	CodeInternal            = "INTERNAL_ERROR"
)

// ErrorResponse is the API's ErrorResponseBase.
type ErrorResponse struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Abort answers with an ErrorResponseBase and stops the handler chain.
func Abort(c *gin.Context, status int, code, message string) {
	c.AbortWithStatusJSON(status, ErrorResponse{Code: code, Message: message})
}

// MaxBodyBytes is the largest request body accepted (4 MB).
const MaxBodyBytes = 4 << 20

// BindJSON decodes the body into v, answering 400 or 413 itself when it cannot; it reports
// whether the handler may go on.
func BindJSON(c *gin.Context, v any) bool {
	dec := newDecoder(c.Request.Body)
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			Abort(c, http.StatusRequestEntityTooLarge, CodePayloadTooLarge, "request body exceeds 4 MB")
		default:
			Abort(c, http.StatusBadRequest, CodeValidation, "malformed JSON body: "+err.Error())
		}
		return false
	}
	if dec.More() {
		Abort(c, http.StatusBadRequest, CodeValidation, "malformed JSON body: trailing data after the JSON value")
		return false
	}
	return true
}

// NewEngine returns a gin engine with recovery that answers in the API's error shape,
// a body size limit and request logging.
func NewEngine(log *slog.Logger) *gin.Engine {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	// c.Done/Err/Value follow the request's context. Still, handlers hand c.Request.Context(),
	// never c, to anything that derives a context with a timer (egress timeouts, Kafka writes,
	// mapping deadlines): gin reuses a *gin.Context for the next request once the handler
	// returns, and a timer firing just then reads the recycled context (a data race the race
	// detector caught in the secure proxy's timeout path).
	e.ContextWithFallback = true
	e.Use(func(c *gin.Context) {
		start := time.Now()
		// The request id: the caller's X-Request-Id when it is a plausible id (a proxy or the
		// client set it), else a new one; answered, logged with every line of the request and
		// stored in the access log.
		requestID := c.GetHeader("X-Request-Id")
		if !requestIDPattern.MatchString(requestID) {
			requestID = "req_" + ids.ULID(start)
		}
		c.Header("X-Request-Id", requestID)
		// A span per request, continuing the caller's trace (traceparent); events it accepts
		// carry it into Kafka. Without an OTLP endpoint the tracer is a no-op.
		ctx := otel.GetTextMapPropagator().Extract(c.Request.Context(), tracing.HTTPCarrier(c.Request.Header))
		ctx, span := tracing.Tracer().Start(ctx, c.Request.Method+" "+c.FullPath(), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", c.Request.Method), attribute.String("http.route", c.FullPath()),
				attribute.String("erpstream.request_id", requestID)))
		defer func() {
			span.SetAttributes(attribute.Int("http.response.status_code", c.Writer.Status()))
			if c.Writer.Status() >= 500 {
				span.SetStatus(codes.Error, http.StatusText(c.Writer.Status()))
			}
			span.End()
		}()
		c.Request = c.Request.WithContext(logctx.WithRequestID(ctx, requestID))
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r) // a handler cutting a response off on purpose: net/http closes the connection
				}
				log.ErrorContext(c, "panic in handler", "path", c.FullPath(), "panic", r)
				Abort(c, http.StatusInternalServerError, CodeInternal, "internal error")
			}
		}()
		// Every body is bounded; a streaming route lifts the bound for itself (Stream), decided
		// by the route matched, never by how the path looks.
		if c.Request.Body != nil {
			c.Set(rawBodyKey, c.Request.Body)
			c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes)
		}
		c.Next()
		if c.Writer.Status() >= 500 {
			log.WarnContext(c, "request failed", "method", c.Request.Method, "path", c.FullPath(),
				"status", c.Writer.Status(), "duration_ms", time.Since(start).Milliseconds())
		} else {
			log.DebugContext(c, "request", "method", c.Request.Method, "path", c.FullPath(),
				"status", c.Writer.Status(), "duration_ms", time.Since(start).Milliseconds())
		}
	})
	e.NoRoute(func(c *gin.Context) { Abort(c, http.StatusNotFound, CodeNotFound, "no such route") })
	e.NoMethod(func(c *gin.Context) {
		Abort(c, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "method not allowed on this route")
	})
	return e
}

// requestIDPattern is what an incoming X-Request-Id may look like to be kept.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:\-]{1,128}$`)

// Authenticator resolves bearer tokens.
type Authenticator interface {
	Authenticate(token string) (*auth.Principal, error)
}

const (
	principalKey = "erpstream.principal"
	rawBodyKey   = "erpstream.raw-body"
)

// StreamIdleTimeout is how long a streaming request may go without reading a line or writing a
// result before it is cut. A stream that makes progress runs for as long as it needs.
var StreamIdleTimeout = 60 * time.Second

// StreamIn marks a route whose request body streams (NDJSON in): the body is not bounded as a
// whole (the handler bounds each line), and the server's total read and write timeouts give way
// to idle deadlines that the handler moves on with every line (StreamProgress).
func StreamIn() gin.HandlerFunc {
	return func(c *gin.Context) {
		if raw, ok := c.Get(rawBodyKey); ok {
			c.Request.Body = raw.(io.ReadCloser)
		}
		// Results are written while lines are still read: without full duplex an HTTP/1 server
		// stops reading the body at the first write.
		_ = http.NewResponseController(c.Writer).EnableFullDuplex()
		StreamProgress(c)
		c.Next()
	}
}

// StreamOut marks a route whose answer streams (NDJSON out) for as long as it makes progress:
// the body stays bounded, the total timeouts give way to idle deadlines as for StreamIn.
func StreamOut() gin.HandlerFunc {
	return func(c *gin.Context) {
		StreamProgress(c)
		c.Next()
	}
}

// StreamProgress moves a streaming request's read and write deadlines StreamIdleTimeout ahead.
func StreamProgress(c *gin.Context) {
	rc := http.NewResponseController(c.Writer)
	deadline := time.Now().Add(StreamIdleTimeout)
	_ = rc.SetReadDeadline(deadline)
	_ = rc.SetWriteDeadline(deadline)
}

// RequireAuth authenticates the bearer token; 401 in the API's error shape when it is
// missing or unknown.
func RequireAuth(a Authenticator, log ...*slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.GetHeader("Authorization")
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			Abort(c, http.StatusUnauthorized, CodeUnauthorized, "missing bearer token (Authorization: Bearer <token>)")
			return
		}
		p, err := a.Authenticate(strings.TrimSpace(token))
		if err != nil {
			// Why, for the operator (expired, wrong audience, unknown key); never the token itself
			// and never in the answer.
			for _, l := range log {
				l.InfoContext(c, "bearer token refused", "path", c.FullPath(), "client", c.ClientIP(), "reason", err.Error())
			}
			Abort(c, http.StatusUnauthorized, CodeUnauthorized, "invalid bearer token")
			return
		}
		c.Set(principalKey, p)
		c.Next()
	}
}

// RequireBearer admits only requests bearing token (compared in constant time): for endpoints
// outside the org model, such as metrics.
func RequireBearer(token string) gin.HandlerFunc {
	want := []byte("Bearer " + token)
	return func(c *gin.Context) {
		if subtle.ConstantTimeCompare([]byte(c.GetHeader("Authorization")), want) != 1 {
			Abort(c, http.StatusUnauthorized, CodeUnauthorized, "metrics need the metrics token (Authorization: Bearer <ERPSTREAM_METRICS_TOKEN>)")
			return
		}
		c.Next()
	}
}

// Require checks one permission of the authenticated principal; 403 without it.
func Require(perm string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !Principal(c).Has(perm) {
			Abort(c, http.StatusForbidden, CodeForbidden, "token lacks permission "+perm)
			return
		}
		c.Next()
	}
}

// Principal returns the caller; only valid behind RequireAuth.
func Principal(c *gin.Context) *auth.Principal {
	v, _ := c.Get(principalKey)
	p, _ := v.(*auth.Principal)
	if p == nil {
		return &auth.Principal{}
	}
	return p
}
