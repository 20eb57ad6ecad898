package app

import (
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// buildInfo is erpstream_build_info{version, revision, go_version, services} = 1: which build runs
// which services, for dashboards and alerts comparing replicas.
func buildInfo(services []string) prometheus.Collector {
	version, revision, goVersion := "unknown", "unknown", "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		version, goVersion = info.Main.Version, info.GoVersion
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "erpstream_build_info",
		Help:        "The running build: version, VCS revision, Go version and the services of this process.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "go_version": goVersion, "services": strings.Join(services, ",")}})
	g.Set(1)
	return g
}
