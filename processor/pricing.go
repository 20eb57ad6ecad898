package processor

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/erpstream/erpstream/processor/mapping"
)

// Pricing (MAPPING.md §12) with the built-in price calculator: each line's unit amount (from the
// line, a unit_amount_override, or the catalog price) times its quantity, with its tax rate, net
// or tax-inclusive; totals per entity and per recurrence. Catalog products and prices are looked
// up like any entity and never created.

// priceFacts are what the calculator needs of an entity of schema price, kept in the entity state.
type priceFacts struct {
	UnitAmount    *int64   `json:"u,omitempty"`
	Currency      string   `json:"c,omitempty"`
	TaxInclusive  *bool    `json:"ti,omitempty"`
	TaxRate       *float64 `json:"tr,omitempty"`
	Type          string   `json:"t,omitempty"`
	BillingPeriod string   `json:"bp,omitempty"`
	Description   string   `json:"d,omitempty"`
	Inactive      bool     `json:"x,omitempty"`
}

// priceSchema is the schema whose entities are catalog prices; productPrices is the product's
// relation attribute listing its prices.
const (
	priceSchema   = "price"
	productPrices = "price_options"
)

// capturePrice merges a price write's attributes into the facts.
func capturePrice(current *priceFacts, attrs mapping.Attributes) *priceFacts {
	f := &priceFacts{}
	if current != nil {
		*f = *current
	}
	for _, at := range attrs {
		line := mapping.PricingLine{}
		switch at.Name {
		case "unit_amount", "unit_amount_decimal":
			if line.SetValue(at.Name, at.Value) == nil {
				f.UnitAmount = line.UnitAmount
			}
		case "unit_amount_currency":
			if line.SetValue(at.Name, at.Value) == nil {
				f.Currency = line.Currency
			}
		case "is_tax_inclusive":
			if b, ok := at.Value.(bool); ok {
				f.TaxInclusive = &b
			}
		case "tax_rate":
			if line.SetValue(at.Name, at.Value) == nil {
				f.TaxRate = line.TaxRate
			}
		case "type":
			f.Type, _ = at.Value.(string)
		case "billing_period":
			f.BillingPeriod, _ = at.Value.(string)
		case "description":
			f.Description, _ = at.Value.(string)
		case "active":
			active, ok := at.Value.(bool)
			f.Inactive = ok && !active
		}
	}
	return f
}

// pricing prices one update; the result attributes are merged into attrs (overriding mapped
// attributes of the same name). A failure is handled by the block's on_error.
func (a *application) pricing(u mapping.EntityUpdate, attrs mapping.Attributes) (mapping.Attributes, *failure) {
	in := u.Pricing
	result, err := a.price(in)
	if err != nil {
		msg := fmt.Sprintf("pricing of %s %s: %v", u.EntitySlug, uniqueIDsText(u), err)
		switch in.OnError {
		case "skip":
			a.p.log.Info("pricing skipped", "use_case_id", a.uc.ID, "event_id", a.ev.EventID, "reason", msg)
			return attrs, nil
		case "warn":
			a.warn("PRICING_FAILED", msg+"; written without pricing")
			return attrs, nil
		}
		return nil, a.fail("PRICING_FAILED", "%s", msg)
	}
	for _, r := range result {
		replaced := false
		for i := range attrs {
			if attrs[i].Name == r.Name {
				attrs[i].Value, replaced = r.Value, true
			}
		}
		if !replaced {
			attrs = append(attrs, r)
		}
	}
	return attrs, nil
}

type pricedLine struct {
	Custom            bool     `json:"_custom,omitempty"`
	ProductID         string   `json:"product_id,omitempty"`
	PriceID           string   `json:"price_id,omitempty"`
	Description       string   `json:"description,omitempty"`
	Quantity          float64  `json:"quantity"`
	UnitAmount        int64    `json:"unit_amount"`
	UnitAmountDecimal string   `json:"unit_amount_decimal"`
	Currency          string   `json:"unit_amount_currency"`
	Type              string   `json:"type"`
	BillingPeriod     string   `json:"billing_period,omitempty"`
	TaxRate           *float64 `json:"tax_rate,omitempty"`
	TaxInclusive      bool     `json:"is_tax_inclusive"`
	AmountSubtotal    int64    `json:"amount_subtotal"`
	AmountTax         int64    `json:"amount_tax"`
	AmountTotal       int64    `json:"amount_total"`
}

type recurrence struct {
	Type           string `json:"type"`
	BillingPeriod  string `json:"billing_period,omitempty"`
	AmountSubtotal int64  `json:"amount_subtotal"`
	AmountTax      int64  `json:"amount_tax"`
	AmountTotal    int64  `json:"amount_total"`
}

// price resolves the catalog references of the lines and calculates.
func (a *application) price(in *mapping.PricingInput) (mapping.Attributes, error) {
	if in.Error != "" {
		return nil, errors.New(in.Error)
	}
	lines := make([]pricedLine, 0, len(in.Lines))
	for n, l := range in.Lines {
		p := pricedLine{Custom: l.Custom, ProductID: l.ProductID, PriceID: l.PriceID, Description: l.Description,
			Quantity: l.Quantity, Currency: l.Currency, Type: l.Type, BillingPeriod: l.BillingPeriod, TaxRate: l.TaxRate}
		if l.IsTaxInclusive != nil {
			p.TaxInclusive = *l.IsTaxInclusive
		}
		if l.Product != nil {
			facts, err := a.catalog(&p, l)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			if l.UnitAmount == nil {
				p.UnitAmount = *facts.UnitAmount
			}
			p.Description = firstNonEmpty(l.DescriptionOverride, facts.Description, p.Description)
			p.Currency = firstNonEmpty(p.Currency, facts.Currency)
			p.Type = firstNonEmpty(p.Type, facts.Type)
			p.BillingPeriod = firstNonEmpty(p.BillingPeriod, facts.BillingPeriod)
			if p.TaxRate == nil {
				p.TaxRate = facts.TaxRate
			}
			if l.IsTaxInclusive == nil && facts.TaxInclusive != nil {
				p.TaxInclusive = *facts.TaxInclusive
			}
		}
		if l.UnitAmount != nil {
			p.UnitAmount = *l.UnitAmount
		}
		p.Currency = firstNonEmpty(p.Currency, "EUR")
		p.Type = firstNonEmpty(p.Type, "one_time")
		if p.Type == "recurring" && p.BillingPeriod == "" {
			return nil, fmt.Errorf("line %d: a recurring line needs billing_period", n)
		}
		if len(lines) > 0 && p.Currency != lines[0].Currency {
			return nil, fmt.Errorf("line %d: currency %s differs from %s (one currency per entity)", n, p.Currency, lines[0].Currency)
		}
		calculate(&p)
		lines = append(lines, p)
	}
	var subtotal, tax, total int64
	var recurrences []recurrence
	index := map[[2]string]int{}
	for _, l := range lines {
		subtotal, tax, total = subtotal+l.AmountSubtotal, tax+l.AmountTax, total+l.AmountTotal
		k := [2]string{l.Type, l.BillingPeriod}
		i, ok := index[k]
		if !ok {
			i = len(recurrences)
			index[k] = i
			recurrences = append(recurrences, recurrence{Type: l.Type, BillingPeriod: l.BillingPeriod})
		}
		r := &recurrences[i]
		r.AmountSubtotal, r.AmountTax, r.AmountTotal = r.AmountSubtotal+l.AmountSubtotal, r.AmountTax+l.AmountTax, r.AmountTotal+l.AmountTotal
	}
	currency := "EUR"
	if len(lines) > 0 {
		currency = lines[0].Currency
	}
	if recurrences == nil {
		recurrences = []recurrence{}
	}
	values := map[string]any{
		"line_items": lines, "amount_subtotal": subtotal, "amount_total": total, "currency": currency,
		"total_details": map[string]any{"amount_tax": tax, "recurrences": recurrences},
	}
	var out mapping.Attributes
	for _, name := range mapping.PricingResultAttributes {
		to := in.Names[name]
		if to == "" {
			continue
		}
		b, err := json.Marshal(values[name])
		if err != nil {
			return nil, err
		}
		out = append(out, mapping.Attribute{Name: to, Value: json.RawMessage(b)})
	}
	return out, nil
}

// catalog resolves a line's product and price: both must exist; without a price the product
// must relate to exactly one active one (price_options).
func (a *application) catalog(p *pricedLine, l mapping.PricingLine) (*priceFacts, error) {
	productID, err := a.find(l.Product.Schema, l.Product.UniqueIDs)
	if err != nil {
		return nil, err
	}
	product := a.state(productID)
	if !product.live() {
		return nil, fmt.Errorf("product %s %s not found (pricing never creates products)", l.Product.Schema, mustJSON(l.Product.UniqueIDs))
	}
	p.ProductID = productID
	var priceID string
	if l.Price != nil {
		if priceID, err = a.find(l.Price.Schema, l.Price.UniqueIDs); err != nil {
			return nil, err
		}
		if !a.state(priceID).live() {
			return nil, fmt.Errorf("price %s %s not found (pricing never creates prices)", l.Price.Schema, mustJSON(l.Price.UniqueIDs))
		}
	} else {
		var active []string
		for _, it := range product.Relations[productPrices] {
			if st := a.state(it.EntityID); st.live() && st.Price != nil && !st.Price.Inactive {
				active = append(active, it.EntityID)
			}
		}
		if len(active) != 1 {
			return nil, fmt.Errorf("product %s has %d active prices in %s; name the price", mustJSON(l.Product.UniqueIDs), len(active), productPrices)
		}
		priceID = active[0]
	}
	p.PriceID = priceID
	facts := a.state(priceID).Price
	if facts == nil {
		facts = &priceFacts{}
	}
	if facts.UnitAmount == nil && l.UnitAmount == nil {
		return nil, fmt.Errorf("price %s has no unit_amount (and the line no unit_amount_override)", priceID)
	}
	return facts, nil
}

// calculate fills a line's amounts in cents: net lines add tax on top, tax-inclusive lines take
// it out; halves round away from zero.
func calculate(l *pricedLine) {
	rate := 0.0
	if l.TaxRate != nil {
		rate = *l.TaxRate
	}
	amount := math.Round(float64(l.UnitAmount) * l.Quantity)
	if l.TaxInclusive {
		l.AmountTotal = int64(amount)
		l.AmountSubtotal = int64(math.Round(amount / (1 + rate/100)))
		l.AmountTax = l.AmountTotal - l.AmountSubtotal
	} else {
		l.AmountSubtotal = int64(amount)
		l.AmountTax = int64(math.Round(amount * rate / 100))
		l.AmountTotal = l.AmountSubtotal + l.AmountTax
	}
	sign := ""
	cents := l.UnitAmount
	if cents < 0 {
		sign, cents = "-", -cents
	}
	l.UnitAmountDecimal = sign + strconv.FormatInt(cents/100, 10) + "." + fmt.Sprintf("%02d", cents%100)
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
