package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/configapi"
	"github.com/erpstream/erpstream/console"
	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/query"
)

// consolePages times the console's pages over the seeded rows: the integration page (four time
// series, top errors, the event list) and an event's trace, as an operator's browser asks for
// them, through the console, the API router and the query service on this ClickHouse. The
// configuration lives in an in-process kfake broker.
func consolePages(ctx context.Context, conn driver.Conn, integrations, queries int, now time.Time) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		fail(err)
	}
	defer cluster.Close()
	kcfg := kafkax.Config{Brokers: cluster.ListenAddrs(), TopicPrefix: "erp", Partitions: 1, Replication: 1}
	topics := kafkax.NewTopics(kcfg.TopicPrefix)
	admin, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...))
	if err != nil {
		fail(err)
	}
	defer admin.Close()
	if err := kafkax.EnsureTopics(ctx, kadm.NewClient(admin), topics.Specs(1), 1); err != nil {
		fail(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	reg, err := registry.New(registry.Config{Topic: topics.Config, Opts: []kgo.Opt{kgo.SeedBrokers(kcfg.Brokers...)}, Log: quiet})
	if err != nil {
		fail(err)
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = reg.Run(rctx) }()
	<-reg.Ready()
	for i := range integrations {
		at := now.Add(-40 * 24 * time.Hour)
		if err := reg.PutIntegration(ctx, &registry.Integration{ID: integrationID(i), OrgID: org, Name: fmt.Sprintf("ERP %d", i),
			CreatedAt: at, UpdatedAt: at}); err != nil {
			fail(err)
		}
		for u := range 3 {
			if err := reg.PutUseCase(ctx, &registry.UseCase{ID: fmt.Sprintf("uc-%d-%d", i, u), OrgID: org, IntegrationID: integrationID(i),
				Name: fmt.Sprintf("use case %d", u), Type: "inbound", Enabled: true, Version: 1, CreatedAt: at, UpdatedAt: at}); err != nil {
				fail(err)
			}
		}
	}

	var tokens auth.StaticTokens
	tokens.Add("bench-token", auth.Principal{OrgID: org, TokenID: "bench", Permissions: auth.AllPermissions})
	engine := httpapi.NewEngine(quiet)
	api := engine.Group("/", httpapi.RequireAuth(&tokens))
	clock := func() time.Time { return now }
	(&query.Service{Store: &query.ClickHouseStore{Conn: conn}, Registry: reg, Log: quiet, Now: clock}).Register(api)
	(&configapi.API{Registry: reg, Now: clock}).Register(api)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	h, err := console.New(console.Config{API: engine, Auth: &tokens, Key: key, Log: quiet, Now: clock})
	if err != nil {
		fail(err)
	}
	h.Register(engine)

	login := httptest.NewRequest(http.MethodPost, "/console/login", strings.NewReader(url.Values{"token": {"bench-token"}}.Encode()))
	login.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	engine.ServeHTTP(rec, login)
	var session *http.Cookie
	for _, c := range rec.Result().Cookies() {
		session = c
	}
	if session == nil {
		fail(fmt.Errorf("console sign-in: %d", rec.Code))
	}
	page := func(path string) error {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.AddCookie(session)
		w := httptest.NewRecorder()
		engine.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			return fmt.Errorf("%s: %d %.300s", path, w.Code, w.Body.String())
		}
		return nil
	}
	fmt.Printf("== console pages over the same rows (each page makes the API's queries; a browser's view)\n")
	n := 0
	for _, r := range []string{"24h", "7d"} {
		run("console: integration page, "+r, queries, func() error {
			n++
			return page("/console/integrations/" + integrationID(n%integrations) + "?range=" + r)
		})
	}
	run("console: integration page, errors only", queries, func() error {
		n++
		return page("/console/integrations/" + integrationID(n%integrations) + "?range=24h&level=error")
	})
	run("console: integrations list (health of 20)", max(queries/4, 3), func() error { return page("/console/integrations") })
	// Events spread over the seeded range. Their ids are not ULIDs, so the trace cannot narrow
	// by the event's time: the slower case (a real event's id bounds the scan to its day).
	rows, err := conn.Query(ctx, "SELECT integration_id, event_id FROM monitoring_events WHERE cityHash64(event_id) % 20000 = 0 LIMIT 200")
	if err != nil {
		fail(err)
	}
	var sample [][2]string
	for rows.Next() {
		var integ, ev string
		if err := rows.Scan(&integ, &ev); err != nil {
			fail(err)
		}
		sample = append(sample, [2]string{integ, ev})
	}
	rows.Close()
	if len(sample) == 0 {
		fail(fmt.Errorf("no seeded events to open"))
	}
	run("console: an event's trace", queries, func() error {
		n++
		e := sample[n%len(sample)]
		return page("/console/integrations/" + e[0] + "/events/" + e[1])
	})
}
