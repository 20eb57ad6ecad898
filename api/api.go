// Package api holds the ERP Integration API contract erpstream implements (OpenAPI v0.58.0):
// request validation compiles its component schemas.
package api

import _ "embed"

// Spec is erp-integration.openapi.json.
//
//go:embed erp-integration.openapi.json
var Spec []byte
