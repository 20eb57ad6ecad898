package mapping

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/erpstream/erpstream/internal/jsonata"
)

// PricingConfig is an entity's pricing block (not in spec
// 0.58.0).
type PricingConfig struct {
	JSONataExpression string             `json:"jsonataExpression"`
	Items             []json.RawMessage  `json:"items"`
	ItemsJSONata      string             `json:"items_jsonata"`
	ResultMapping     map[string]*string `json:"result_mapping"`
	OnError           string             `json:"on_error"`
}

// pricingItemConfig is one template item: a catalog reference (product, optional price) or a
// custom line (_custom: true). Every value is a FieldValue {field | jsonataExpression | constant}.
type pricingItemConfig struct {
	Custom  bool              `json:"_custom"`
	Product *pricingRefConfig `json:"product"`
	Price   *pricingRefConfig `json:"price"`
	Values  map[string]json.RawMessage
}

type pricingRefConfig struct {
	EntitySchema string                   `json:"entity_schema"`
	UniqueIDs    []RelationUniqueIDConfig `json:"unique_ids"`
}

// PricingResultAttributes are the attributes pricing writes, by their default names.
var PricingResultAttributes = []string{"line_items", "amount_subtotal", "amount_total", "total_details", "currency"}

// pricingValueKeys are the FieldValue keys of template items, by kind.
var (
	catalogValueKeys = map[string]bool{"quantity": true, "unit_amount_override": true, "description_override": true}
	customValueKeys  = map[string]bool{"description": true, "unit_amount": true, "unit_amount_decimal": true, "unit_amount_currency": true,
		"quantity": true, "type": true, "billing_period": true, "tax_rate": true, "is_tax_inclusive": true}
	billingPeriods = map[string]bool{"weekly": true, "monthly": true, "every_quarter": true, "every_6_months": true, "yearly": true}
)

type compiledPricing struct {
	expr      jsonata.Expression
	itemsExpr jsonata.Expression
	items     []*compiledPricingItem
	onError   string
	names     map[string]string // default name -> attribute written ("" = not written)
}

type compiledPricingItem struct {
	custom  bool
	product *compiledRelationItem
	price   *compiledRelationItem
	values  []*compiledField // attribute = the value's key
}

// PricingInput is what extraction gives the apply stage: the lines to price, or why there are
// none (Error, handled by OnError there).
type PricingInput struct {
	Lines   []PricingLine `json:"lines"`
	OnError string        `json:"on_error"`
	Error   string        `json:"error,omitempty"`
	// Names maps each result attribute's default name to the one written ("" = not written).
	Names map[string]string `json:"-"`
	// Path is the pricing block's configuration path, for errors.
	Path string `json:"-"`
}

// PricingLine is one line before pricing: a catalog reference or a custom line.
type PricingLine struct {
	Product             *RelationItem `json:"-"`
	Price               *RelationItem `json:"-"`
	Custom              bool          `json:"_custom,omitempty"`
	Description         string        `json:"description,omitempty"`
	Quantity            float64       `json:"quantity"`
	UnitAmount          *int64        `json:"unit_amount,omitempty"` // cents
	Currency            string        `json:"unit_amount_currency,omitempty"`
	Type                string        `json:"type,omitempty"`
	BillingPeriod       string        `json:"billing_period,omitempty"`
	TaxRate             *float64      `json:"tax_rate,omitempty"` // percent
	IsTaxInclusive      *bool         `json:"is_tax_inclusive,omitempty"`
	DescriptionOverride string        `json:"description_override,omitempty"`
	ProductID           string        `json:"product_id,omitempty"`
	PriceID             string        `json:"price_id,omitempty"`
}

// MarshalJSON shows catalog references by unique ids, as relations are.
func (l PricingLine) MarshalJSON() ([]byte, error) {
	type plain PricingLine
	b, err := json.Marshal(plain(l))
	if err != nil || (l.Product == nil && l.Price == nil) {
		return b, err
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	ref := func(it *RelationItem) any {
		uids, _ := it.UniqueIDs.MarshalJSON()
		return map[string]any{"_schema": it.Schema, "$entity_unique_ids": json.RawMessage(uids)}
	}
	if l.Product != nil {
		m["product"] = ref(l.Product)
	}
	if l.Price != nil {
		m["price"] = ref(l.Price)
	}
	return json.Marshal(m)
}

func compilePricing(path string, raw json.RawMessage, eng jsonata.Engine) (*compiledPricing, error) {
	var pc PricingConfig
	if err := json.Unmarshal(raw, &pc); err != nil {
		return nil, &ConfigError{Path: path, Msg: "not a pricing configuration: " + err.Error()}
	}
	cp := &compiledPricing{onError: pc.OnError, names: map[string]string{}}
	switch cp.onError {
	case "":
		cp.onError = "fail"
	case "fail", "skip", "warn":
	default:
		return nil, &ConfigError{Path: path + ".on_error", Msg: "one of fail, skip, warn"}
	}
	for _, name := range PricingResultAttributes {
		cp.names[name] = name
	}
	for name, to := range pc.ResultMapping {
		if _, known := cp.names[name]; !known {
			return nil, &ConfigError{Path: path + ".result_mapping." + name, Msg: "one of " + strings.Join(PricingResultAttributes, ", ")}
		}
		if to == nil {
			cp.names[name] = ""
		} else if *to == "" {
			return nil, &ConfigError{Path: path + ".result_mapping." + name, Msg: "an attribute name, or null to leave it out"}
		} else {
			cp.names[name] = *to
		}
	}
	var err error
	if pc.JSONataExpression != "" {
		if cp.expr, err = compileExpr(eng, path+".jsonataExpression", pc.JSONataExpression); err != nil {
			return nil, err
		}
	}
	switch {
	case pc.ItemsJSONata != "" && len(pc.Items) > 0:
		return nil, &ConfigError{Path: path, Msg: "items and items_jsonata exclude each other"}
	case pc.ItemsJSONata != "":
		cp.itemsExpr, err = compileExpr(eng, path+".items_jsonata", pc.ItemsJSONata)
		return cp, err
	case len(pc.Items) == 0:
		return nil, &ConfigError{Path: path, Msg: "items or items_jsonata is required"}
	}
	for i, rawItem := range pc.Items {
		ci, err := compilePricingItem(fmt.Sprintf("%s.items[%d]", path, i), rawItem, eng)
		if err != nil {
			return nil, err
		}
		cp.items = append(cp.items, ci)
	}
	return cp, nil
}

func compilePricingItem(path string, raw json.RawMessage, eng jsonata.Engine) (*compiledPricingItem, error) {
	var all map[string]json.RawMessage
	var ic pricingItemConfig
	if json.Unmarshal(raw, &all) != nil || json.Unmarshal(raw, &ic) != nil {
		return nil, &ConfigError{Path: path, Msg: "an object is required"}
	}
	ci := &compiledPricingItem{custom: ic.Custom}
	allowed := catalogValueKeys
	if ic.Custom {
		allowed = customValueKeys
		if ic.Product != nil || ic.Price != nil {
			return nil, &ConfigError{Path: path, Msg: "a _custom item names no product or price"}
		}
		for _, req := range []string{"description", "quantity"} {
			if _, ok := all[req]; !ok {
				return nil, &ConfigError{Path: path + "." + req, Msg: "required for a _custom item"}
			}
		}
		_, cents := all["unit_amount"]
		_, decimal := all["unit_amount_decimal"]
		if cents == decimal {
			return nil, &ConfigError{Path: path, Msg: "exactly one of unit_amount (cents) and unit_amount_decimal is required for a _custom item"}
		}
	} else {
		if ic.Product == nil {
			return nil, &ConfigError{Path: path + ".product", Msg: "required (or _custom: true)"}
		}
		if _, ok := all["quantity"]; !ok {
			return nil, &ConfigError{Path: path + ".quantity", Msg: "required"}
		}
		var err error
		if ci.product, err = compilePricingRef(path+".product", "product", ic.Product, eng); err != nil {
			return nil, err
		}
		if ic.Price != nil {
			if ci.price, err = compilePricingRef(path+".price", "price", ic.Price, eng); err != nil {
				return nil, err
			}
		}
	}
	for key, v := range all {
		if key == "_custom" || key == "product" || key == "price" {
			continue
		}
		if !allowed[key] {
			return nil, &ConfigError{Path: path + "." + key, Msg: "not a pricing item key"}
		}
		var fv FieldConfig
		if err := json.Unmarshal(v, &fv); err != nil {
			return nil, &ConfigError{Path: path + "." + key, Msg: "a value {field | jsonataExpression | constant} is required"}
		}
		f, err := compileField(path+"."+key, FieldConfig{Attribute: key, Field: fv.Field, JSONataExpression: fv.JSONataExpression, Constant: fv.Constant}, eng)
		if err != nil {
			return nil, err
		}
		ci.values = append(ci.values, f)
	}
	return ci, nil
}

func compilePricingRef(path, defaultSchema string, rc *pricingRefConfig, eng jsonata.Engine) (*compiledRelationItem, error) {
	schema := rc.EntitySchema
	if schema == "" {
		schema = defaultSchema
	}
	return compileRelationItem(path, schema, rc.UniqueIDs, nil, eng)
}

// extract builds the pricing input of one entity item. Failures do not fail the event here: the
// apply stage handles them by on_error.
func (cp *compiledPricing) extract(ctx context.Context, path string, item any, env *jsonata.Env) *PricingInput {
	in := &PricingInput{OnError: cp.onError, Names: cp.names, Lines: []PricingLine{}, Path: path}
	fail := func(format string, args ...any) *PricingInput {
		in.Lines, in.Error = []PricingLine{}, fmt.Sprintf(format, args...)
		return in
	}
	data := item
	if cp.expr != nil {
		v, err := cp.expr.Eval(ctx, item, env)
		if err != nil {
			return fail("%s.jsonataExpression: %v", path, err)
		}
		data = v
	}
	if cp.itemsExpr != nil {
		v, err := cp.itemsExpr.Eval(ctx, data, env)
		if err != nil {
			return fail("%s.items_jsonata: %v", path, err)
		}
		for n, el := range itemsOf(v) {
			obj, ok := el.(*jsonata.Object)
			if !ok {
				return fail("%s.items_jsonata (item %d): an object is required", path, n)
			}
			line := PricingLine{Custom: true}
			for _, key := range obj.Keys() {
				val, _ := obj.Get(key)
				if err := line.set(key, val); err != nil {
					return fail("%s.items_jsonata (item %d): %v", path, n, err)
				}
			}
			if err := line.check(); err != nil {
				return fail("%s.items_jsonata (item %d): %v", path, n, err)
			}
			in.Lines = append(in.Lines, line)
		}
		return in
	}
	lines := itemsOf(data)
	if len(cp.items) > 1 && len(cp.items) != len(lines) {
		return fail("%s.items: %d item configurations for %d lines (one applies to every line; several match lines by index)", path, len(cp.items), len(lines))
	}
	for n, lineData := range lines {
		ci := cp.items[0]
		if len(cp.items) > 1 {
			ci = cp.items[n]
		}
		ipath := fmt.Sprintf("%s.items[%d] (line %d)", path, min(n, len(cp.items)-1), n)
		line := PricingLine{Custom: ci.custom, Quantity: 1}
		if ci.product != nil {
			p, err := ci.product.extract(ctx, ipath+".product", lineData, env)
			if err != nil {
				return fail("%v", err)
			}
			line.Product = &p
		}
		if ci.price != nil {
			p, err := ci.price.extract(ctx, ipath+".price", lineData, env)
			if err != nil {
				return fail("%v", err)
			}
			line.Price = &p
		}
		for _, f := range ci.values {
			v, ok, err := f.value(ctx, ipath+"."+f.attribute, lineData, env)
			if err != nil {
				return fail("%v", err)
			}
			if !ok {
				continue
			}
			if err := line.set(f.attribute, v); err != nil {
				return fail("%s: %v", ipath, err)
			}
		}
		if err := line.check(); err != nil {
			return fail("%s: %v", ipath, err)
		}
		in.Lines = append(in.Lines, line)
	}
	return in
}

// SetValue reads one value of a line (also how the pipeline reads a price entity's attributes).
func (l *PricingLine) SetValue(key string, v any) error { return l.set(key, v) }

// set reads one value of a line.
func (l *PricingLine) set(key string, v any) error {
	bad := func(want string) error { return fmt.Errorf("%s %s: %s is required", key, display(v), want) }
	switch key {
	case "description", "description_override", "unit_amount_currency", "type", "billing_period", "product_id", "price_id":
		s, ok := v.(string)
		if !ok {
			return bad("a string")
		}
		switch key {
		case "description":
			l.Description = s
		case "description_override":
			l.DescriptionOverride = s
		case "unit_amount_currency":
			l.Currency = strings.ToUpper(s)
		case "type":
			l.Type = s
		case "billing_period":
			l.BillingPeriod = s
		case "product_id":
			l.ProductID = s
		case "price_id":
			l.PriceID = s
		}
	case "quantity", "tax_rate":
		f, ok := number(v)
		if !ok {
			return bad("a number")
		}
		if key == "quantity" {
			l.Quantity = f
		} else {
			l.TaxRate = &f
		}
	case "unit_amount", "unit_amount_override":
		f, ok := number(v)
		if !ok || f != float64(int64(f)) {
			return bad("an integer amount in cents")
		}
		cents := int64(f)
		l.UnitAmount = &cents
	case "unit_amount_decimal":
		f, ok := number(v)
		if !ok {
			return bad("a decimal amount")
		}
		cents := int64(f*100 + copySign(0.5, f))
		l.UnitAmount = &cents
	case "is_tax_inclusive":
		b, ok := v.(bool)
		if !ok {
			return bad("a boolean")
		}
		l.IsTaxInclusive = &b
	case "_custom":
	default:
		return fmt.Errorf("%s: not a pricing line key", key)
	}
	return nil
}

// check validates a line after its values are read.
func (l *PricingLine) check() error {
	if l.Quantity < 0 {
		return fmt.Errorf("quantity %v: must not be negative", l.Quantity)
	}
	if l.Type != "" && l.Type != "one_time" && l.Type != "recurring" {
		return fmt.Errorf("type %q: one of one_time, recurring", l.Type)
	}
	if l.BillingPeriod != "" && !billingPeriods[l.BillingPeriod] {
		return fmt.Errorf("billing_period %q: one of weekly, monthly, every_quarter, every_6_months, yearly", l.BillingPeriod)
	}
	if l.Custom && l.UnitAmount == nil {
		return fmt.Errorf("unit_amount or unit_amount_decimal is required")
	}
	return nil
}

func number(v any) (float64, bool) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case string:
		var err error
		if f, err = strconv.ParseFloat(strings.TrimSpace(x), 64); err != nil {
			return 0, false
		}
	default:
		return 0, false
	}
	// Amounts are cents in an int64: keep every product of them far inside it.
	return f, !math.IsNaN(f) && math.Abs(f) < 1e12
}

func copySign(a, b float64) float64 {
	if b < 0 {
		return -a
	}
	return a
}
