package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
)

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
			c := kafkatest.New(b)
			reg := registrytest.Start(b, c)
			ctx := context.Background()
			if err := reg.PutUseCase(ctx, &registry.UseCase{ID: "uc", OrgID: "org", IntegrationID: "int", Name: "uc", Slug: "uc",
				Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: json.RawMessage(tc.config)}); err != nil {
				b.Fatal(err)
			}
			p, err := New(Config{Kafka: c.Config, Topics: c.Topics, Registry: reg, Log: kafkatest.Quiet()})
			if err != nil {
				b.Fatal(err)
			}
			payloads := make([]json.RawMessage, b.N)
			for i := range payloads {
				payloads[i] = json.RawMessage(tc.payload(i))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ev := envelope.Event{EventID: fmt.Sprint("e", i), OrgID: "org", IntegrationID: "int", UseCaseID: "uc", Format: "json",
					Payload: payloads[i], ReceivedAtUs: int64(1_700_000_000_000_000 + i)}
				if _, o := p.mapEvent(ctx, &ev, 0); o.level != envelope.LevelSuccess {
					b.Fatalf("event %d: %s %s", i, o.code, o.message)
				}
				if i%2000 == 1999 {
					p.entities.commit(nil)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
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
