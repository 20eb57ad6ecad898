package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/erpstream/erpstream/egress"
)

// healthcheck asks this container's own erpstream for /readyz (for images without curl, and
// for compose and Kubernetes exec probes): exit 0 when ready, 1 with the reason otherwise.
func healthcheck(args []string) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	target := fs.String("url", "", "the readiness URL (default: /readyz on ERPSTREAM_METRICS_ADDR, else on ERPSTREAM_HTTP_ADDR)")
	live := fs.Bool("live", false, "ask /livez instead: is the process serving at all")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	u := *target
	if u == "" {
		addr := os.Getenv("ERPSTREAM_METRICS_ADDR")
		if addr == "" {
			addr = env("ERPSTREAM_HTTP_ADDR", "127.0.0.1:8080")
		}
		if host, port, err := net.SplitHostPort(addr); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		path := "/readyz"
		if *live {
			path = "/livez"
		}
		u = "http://" + addr + path
	}
	// The probe goes to this host's own listener: through the egress client, with loopback allowed.
	client, err := egress.New(egress.Config{Timeout: 5 * time.Second,
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		return 2
	}
	resp, err := client.Do(context.Background(), req, egress.Policy{Purpose: "healthcheck"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "not ready:", err)
		return 1
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "not ready:", strings.TrimSpace(string(resp.Body)))
		return 1
	}
	_, _ = io.WriteString(os.Stdout, "ready\n")
	return 0
}
