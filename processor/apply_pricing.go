package processor

import (
	"cmp"
	"fmt"

	"github.com/erpstream/erpstream/mapping"
)

// Pricing with the built-in price calculator: each line's unit amount (from the
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
	return mapping.MergePricing(attrs, result), nil
}

// catalog resolves a line's product and price: both must exist; without a price the product
// must relate to exactly one active one (price_options).
func (a *application) catalog(p *mapping.PricedLine, l mapping.PricingLine) (*priceFacts, error) {
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

// price resolves the catalog references of the lines and calculates (mapping.Price).
func (a *application) price(in *mapping.PricingInput) (mapping.Attributes, error) {
	return mapping.Price(in, func(l mapping.PricingLine, p *mapping.PricedLine) error {
		facts, err := a.catalog(p, l)
		if err != nil {
			return err
		}
		if l.UnitAmount == nil {
			p.UnitAmount = *facts.UnitAmount
		}
		p.Description = cmp.Or(l.DescriptionOverride, facts.Description, p.Description)
		p.Currency = cmp.Or(p.Currency, facts.Currency)
		p.Type = cmp.Or(p.Type, facts.Type)
		p.BillingPeriod = cmp.Or(p.BillingPeriod, facts.BillingPeriod)
		if p.TaxRate == nil {
			p.TaxRate = facts.TaxRate
		}
		if l.IsTaxInclusive == nil && facts.TaxInclusive != nil {
			p.TaxInclusive = *facts.TaxInclusive
		}
		return nil
	})
}
