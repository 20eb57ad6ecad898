package tracing

import (
	"runtime/debug"
	"strings"

	"go.opentelemetry.io/otel/attribute"
)

func version() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		return info.Main.Version
	}
	return "unknown"
}

func attrServices(services []string) attribute.KeyValue {
	return attribute.String("erpstream.services", strings.Join(services, ","))
}
