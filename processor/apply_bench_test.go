package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
)

// benchProcessor is a processor over kfake with the use cases (slug: configuration) of one org's
// registered integration, mapping events without Kafka I/O.
type benchProcessor struct {
	*Processor
	seq int
}

func newBenchProcessor(b *testing.B, useCases map[string]string) *benchProcessor {
	b.Helper()
	c := kafkatest.New(b)
	reg := registrytest.Start(b, c)
	ctx := context.Background()
	if err := reg.PutIntegration(ctx, &registry.Integration{ID: "int", OrgID: "org", Name: "SAP"}); err != nil {
		b.Fatal(err)
	}
	for slug, config := range useCases {
		if err := reg.PutUseCase(ctx, &registry.UseCase{ID: slug, OrgID: "org", IntegrationID: "int", Name: slug, Slug: slug,
			Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: json.RawMessage(config)}); err != nil {
			b.Fatal(err)
		}
	}
	p, err := New(Config{Kafka: c.Config, Topics: c.Topics, Registry: reg, Log: kafkatest.Quiet()})
	if err != nil {
		b.Fatal(err)
	}
	return &benchProcessor{Processor: p}
}

// mapEvent maps one event of the use case; anything but success fails the benchmark.
func (p *benchProcessor) mapEvent(b *testing.B, useCase string, payload json.RawMessage) {
	p.seq++
	ev := envelope.Event{EventID: fmt.Sprint("e", p.seq), OrgID: "org", IntegrationID: "int", UseCaseID: useCase, Format: "json",
		Payload: payload, ReceivedAtUs: int64(1_700_000_000_000_000 + p.seq)}
	if _, o := p.Processor.mapEvent(context.Background(), &ev, 0); o.level != envelope.LevelSuccess {
		b.Fatalf("event %d: %s %s", p.seq, o.code, o.message)
	}
}

// mapAll maps one event of the use case per payload, committing the open transaction every
// perTransaction events as polls do, and reports events/s.
func (p *benchProcessor) mapAll(b *testing.B, useCase string, payloads []json.RawMessage, perTransaction int) {
	b.ReportAllocs()
	b.ResetTimer()
	for i, payload := range payloads {
		p.mapEvent(b, useCase, payload)
		if i%perTransaction == perTransaction-1 {
			p.entities.commit(nil)
		}
	}
	b.ReportMetric(float64(len(payloads))/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkProcessEvent measures one event through the processor without Kafka I/O: decode,
// extraction, lookups against the entity state, relations, the records to produce. The state
// grows with every event (new entities) and is committed every 2,000 events, as a poll would.
func BenchmarkProcessEvent(b *testing.B) {
	cases := []struct {
		name, config string
		payload      func(i int) string
	}{
		{"contact-20-fields", contactConfig20(), func(i int) string {
			p := map[string]any{"kdnr": fmt.Sprint("K-", i), "mail": fmt.Sprintf("k%d@example.com", i)}
			for f := 0; f < 18; f++ {
				p[fmt.Sprint("f", f)] = fmt.Sprintf("value %d of %d", f, i)
			}
			out, _ := json.Marshal(p)
			return string(out)
		}},
		{"contract-relation-meters", `{"entities":[
			{"entity_schema":"contract","unique_ids":["contract_number"],"fields":[{"attribute":"contract_number","field":"vertrag"},
				{"attribute":"customer","relations":{"operation":"_set","items":[{"entity_schema":"contact","_tags":["KUNDE"],
					"unique_ids":[{"attribute":"customer_number","field":"kunde"}]}]}}]},
			{"entity_schema":"meter","unique_ids":["meter_number"],"jsonataExpression":"zaehler.{\"meter_number\": nr, \"sparte\": sparte, \"vertrag\": $$.vertrag}",
				"fields":[{"attribute":"meter_number","field":"meter_number"},{"attribute":"medium","jsonataExpression":"sparte = 'STROM' ? 'power' : 'gas'"},
				{"attribute":"contract","relations":{"operation":"_set","items":[{"entity_schema":"contract","unique_ids":[{"attribute":"contract_number","field":"vertrag"}]}]}}]}]}`,
			func(i int) string {
				return fmt.Sprintf(`{"vertrag":"V-%d","kunde":"K-%d","zaehler":[{"nr":"Z-%d-1","sparte":"STROM"},{"nr":"Z-%d-2","sparte":"GAS"}]}`, i, i, i, i)
			}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			p := newBenchProcessor(b, map[string]string{"uc": tc.config})
			payloads := make([]json.RawMessage, b.N)
			for i := range payloads {
				payloads[i] = json.RawMessage(tc.payload(i))
			}
			p.mapAll(b, "uc", payloads, 2000)
		})
	}
}

func contactConfig20() string {
	fields := `{"attribute":"customer_number","field":"kdnr"},{"attribute":"email","field":"mail","_type":"email"}`
	for f := 0; f < 18; f++ {
		fields += fmt.Sprintf(`,{"attribute":"a%d","field":"f%d"}`, f, f)
	}
	return `{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[` + fields + `]}]}`
}

// BenchmarkMeterReadingsIntoOneMeter maps events of 100 new readings each (strict-date
// matching) for one meter counter that holds 5,000 or 50,000 readings already: every incoming
// reading is matched by external id and by day, which costs the same however many are stored.
func BenchmarkMeterReadingsIntoOneMeter(b *testing.B) {
	for _, stored := range []int{5_000, 50_000} {
		b.Run(fmt.Sprint("stored-", stored), func(b *testing.B) { benchmarkReadingsIntoOneMeter(b, stored) })
	}
}

func benchmarkReadingsIntoOneMeter(b *testing.B, stored int) {
	p := newBenchProcessor(b, map[string]string{
		"setup": `{"entities":[{"entity_schema":"meter","unique_ids":["meter_number"],"fields":[{"attribute":"meter_number","field":"nr"}]},
			{"entity_schema":"meter_counter","unique_ids":["obis_number"],"fields":[{"attribute":"obis_number","constant":"1-0:1.8.0"}]}]}`,
		"readings": `{"meter_readings":[{"jsonataExpression":"readings","reading_matching":"strict-date",
			"meter":{"unique_ids":[{"attribute":"meter_number","constant":"Z-1"}]},
			"meter_counter":{"unique_ids":[{"attribute":"obis_number","constant":"1-0:1.8.0"}]},
			"fields":[{"attribute":"external_id","field":"id"},{"attribute":"timestamp","field":"ts"},{"attribute":"value","field":"v"},
				{"attribute":"source","constant":"ERP"}]}]}`,
	})
	mapEvent := func(useCase, payload string) { p.mapEvent(b, useCase, json.RawMessage(payload)) }
	day := 0
	readings := func() string {
		var rs []string
		for range 100 {
			ts := time.Date(2000, 1, 1, 12, 0, 0, 0, time.UTC).AddDate(0, 0, day).Format(time.RFC3339)
			rs = append(rs, fmt.Sprintf(`{"id":"r-%d","ts":"%s","v":%d}`, day, ts, day))
			day++
		}
		return `{"readings":[` + strings.Join(rs, ",") + `]}`
	}
	mapEvent("setup", `{"nr":"Z-1"}`)
	for i := range stored / 100 {
		mapEvent("readings", readings())
		if i%20 == 19 {
			p.entities.commit(nil)
		}
	}
	p.entities.commit(nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		mapEvent("readings", readings())
		if i%20 == 19 {
			p.entities.commit(nil)
		}
	}
	b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "readings/s")
}

// BenchmarkPruneScopeEvents maps events that each mirror one contract's meters (upsert-prune-
// scope over the contract's relations), as an ERP sending whole contracts does; the open
// transaction grows to 5,000 events before it commits, as a poll's would.
func BenchmarkPruneScopeEvents(b *testing.B) {
	p := newBenchProcessor(b, map[string]string{
		"contracts": `{"entities":[{"entity_schema":"contract","unique_ids":["contract_number"],"fields":[{"attribute":"contract_number","field":"vertrag"}]},
			{"entity_schema":"meter","unique_ids":["meter_number"],"mode":"upsert-prune-scope-delete",
			"scope":{"scope_mode":"relations","schema":"contract","unique_ids":[{"attribute":"contract_number","field":"vertrag"}]},
			"jsonataExpression":"zaehler.{\"meter_number\": $, \"vertrag\": $$.vertrag}",
			"fields":[{"attribute":"meter_number","field":"meter_number"},
				{"attribute":"contract","relations":{"operation":"_set","items":[{"entity_schema":"contract","unique_ids":[{"attribute":"contract_number","field":"vertrag"}]}]}}]}]}`,
	})
	payloads := make([]json.RawMessage, b.N)
	for i := range payloads {
		payloads[i] = json.RawMessage(fmt.Sprintf(`{"vertrag":"V-%d","zaehler":["Z-%d-1","Z-%d-2"]}`, i, i, i))
	}
	p.mapAll(b, "contracts", payloads, 5000)
}

// BenchmarkFanOutEvent maps events of 5,000 new contacts each, found by an indexed attribute:
// every contact is looked up among the store's and the event's own before it is created.
func BenchmarkFanOutEvent(b *testing.B) {
	p := newBenchProcessor(b, map[string]string{
		"uc": `{"entities":[{"entity_schema":"contact","unique_ids":["name"],"jsonataExpression":"kunden","fields":[{"attribute":"customer_number","field":"nr"},{"attribute":"name","field":"name"}]}]}`,
		// Another use case looks contacts up by name: their names are indexed, and each new contact
		// is searched for by it before it is created.
		"uc2": `{"entities":[{"entity_schema":"contract","unique_ids":["contract_number"],"fields":[{"attribute":"contract_number","field":"v"},
		{"attribute":"customer","relations":{"operation":"_set","items":[{"entity_schema":"contact","unique_ids":[{"attribute":"name","field":"k"}]}]}}]}]}`,
	})
	for i := range b.N {
		var ks []string
		for j := range 5000 {
			ks = append(ks, fmt.Sprintf(`{"nr":"K-%d-%d","name":"x%d-%d"}`, i, j, i, j))
		}
		p.mapEvent(b, "uc", json.RawMessage(`{"kunden":[`+strings.Join(ks, ",")+`]}`))
		p.entities.commit(nil)
	}
	b.ReportMetric(float64(5000*b.N)/b.Elapsed().Seconds(), "entities/s")
}
