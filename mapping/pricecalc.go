package mapping

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// PricedLine is one entry of the line_items pricing writes.
type PricedLine struct {
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

// Price calculates an entity's pricing with the built-in calculator: per line the
// unit amount (the line's, a unit_amount_override, or the catalog price's) times the quantity in
// cents, net (tax added) or tax-inclusive (tax taken out), halves away from zero; totals per entity
// and per recurrence. catalog fills a catalog line from its product and price (the pipeline looks
// them up; nil: catalog lines cannot be priced).
func Price(in *PricingInput, catalog func(l PricingLine, p *PricedLine) error) (Attributes, error) {
	if in.Error != "" {
		return nil, errors.New(in.Error)
	}
	lines := make([]PricedLine, 0, len(in.Lines))
	for n, l := range in.Lines {
		p := PricedLine{Custom: l.Custom, ProductID: l.ProductID, PriceID: l.PriceID, Description: l.Description,
			Quantity: l.Quantity, Currency: l.Currency, Type: l.Type, BillingPeriod: l.BillingPeriod, TaxRate: l.TaxRate}
		if l.IsTaxInclusive != nil {
			p.TaxInclusive = *l.IsTaxInclusive
		}
		if l.Product != nil {
			if catalog == nil {
				return nil, fmt.Errorf("line %d: a catalog line is priced by the pipeline (it looks the product up)", n)
			}
			if err := catalog(l, &p); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
		}
		if l.UnitAmount != nil {
			p.UnitAmount = *l.UnitAmount
		}
		p.Currency = cmp.Or(p.Currency, "EUR")
		p.Type = cmp.Or(p.Type, "one_time")
		if p.Type == "recurring" && p.BillingPeriod == "" {
			return nil, fmt.Errorf("line %d: a recurring line needs billing_period", n)
		}
		if len(lines) > 0 && p.Currency != lines[0].Currency {
			return nil, fmt.Errorf("line %d: currency %s differs from %s (one currency per entity)", n, p.Currency, lines[0].Currency)
		}
		if amount := float64(p.UnitAmount) * p.Quantity; math.Abs(amount) > 1e15 {
			return nil, fmt.Errorf("line %d: amount %.0f cents is out of range", n, amount)
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
	var out Attributes
	for _, name := range PricingResultAttributes {
		to := in.Names[name]
		if to == "" {
			continue
		}
		b, err := json.Marshal(values[name])
		if err != nil {
			return nil, err
		}
		out = append(out, Attribute{Name: to, Value: json.RawMessage(b)})
	}
	return out, nil
}

// calculate fills a line's amounts in cents: net lines add tax on top, tax-inclusive lines take
// it out; halves round away from zero.
func calculate(l *PricedLine) {
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

// MergePricing lays the pricing result over an entity's attributes: a mapped attribute of the
// same name is overridden, others are appended.
func MergePricing(attrs, result Attributes) Attributes {
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
	return attrs
}

// simulatePricing prices an update as the pipeline would when no lookup is needed (custom and
// items_jsonata lines), following on_error; catalog lines stay shown as the extracted input.
func simulatePricing(u *EntityUpdate, sim *Simulation) *Error {
	in := u.Pricing
	for _, l := range in.Lines {
		if l.Product != nil {
			return nil
		}
	}
	result, err := Price(in, nil)
	u.Pricing = nil
	if err == nil {
		u.Attributes = MergePricing(u.Attributes, result)
		return nil
	}
	switch in.OnError {
	case "warn":
		sim.Warnings = append(sim.Warnings, Warning{EntitySchema: u.EntitySlug, Field: "configuration." + in.Path,
			Message: "PRICING_FAILED: " + err.Error() + "; written without pricing"})
	case "fail":
		return &Error{Code: "PRICING_FAILED", Path: in.Path, Msg: err.Error()}
	}
	return nil
}
