package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/erpstream/erpstream/internal/httpapi"
)

func TestRequestMetricsLabelByRoutePattern(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := httpapi.NewEngine(nil)
	e.Use(httpapi.RequestMetrics(reg))
	e.GET("/v1/integrations/:integrationId", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	for _, path := range []string{"/v1/integrations/a", "/v1/integrations/b", "/nowhere"} {
		e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	want := `
# HELP erpstream_http_requests_total HTTP requests answered, by route, method and status.
# TYPE erpstream_http_requests_total counter
erpstream_http_requests_total{method="GET",route="/v1/integrations/:integrationId",status="204"} 2
erpstream_http_requests_total{method="GET",route="unmatched",status="404"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "erpstream_http_requests_total"); err != nil {
		t.Error(err)
	}
}
