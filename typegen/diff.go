package typegen

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Change is one difference from the last committed types (the API's detected_changes item).
type Change struct {
	Slug        string `json:"slug"`
	Field       string `json:"field"`
	Type        string `json:"type"` // breaking or non-breaking
	Description string `json:"description"`
}

// Change types.
const (
	Breaking    = "breaking"
	NonBreaking = "non-breaking"
)

// Diff compares the committed types of an integration's managed calls (by slug) with the current
// ones. For callers of a generated client, breaking is: a use case gone, a response field gone or
// of another type, a request field added (a new input callers must send) or of another type;
// the opposite changes are not.
func Diff(committed, current map[string]*UseCase) []Change {
	var out []Change
	for _, slug := range sortedUseCases(committed) {
		if _, ok := current[slug]; !ok {
			out = append(out, Change{Slug: slug, Field: "", Type: Breaking, Description: "use case removed"})
		}
	}
	for _, slug := range sortedUseCases(current) {
		cur := current[slug]
		prev, ok := committed[slug]
		if !ok {
			out = append(out, Change{Slug: slug, Type: NonBreaking, Description: "use case added"})
			continue
		}
		compare(&out, slug, "request", prev.Request, cur.Request, true)
		compare(&out, slug, "response", prev.Response, cur.Response, false)
	}
	return out
}

func compare(out *[]Change, slug, field string, prev, cur *Descriptor, request bool) {
	if prev == nil || cur == nil {
		return
	}
	if render(prev) == render(cur) {
		return
	}
	if prev.Kind != cur.Kind || (prev.Kind != KindObject && prev.Kind != KindArray) {
		*out = append(*out, Change{Slug: slug, Field: field, Type: Breaking,
			Description: fmt.Sprintf("type changed from %s to %s", render(prev), render(cur))})
		return
	}
	if prev.Kind == KindArray {
		compare(out, slug, field+"[]", prev.Items, cur.Items, request)
		return
	}
	for _, name := range sortedNames(prev.Properties) {
		if _, ok := cur.Properties[name]; !ok {
			kind := Breaking
			if request {
				kind = NonBreaking // callers may keep sending it
			}
			*out = append(*out, Change{Slug: slug, Field: field + "." + name, Type: kind, Description: "field removed"})
		}
	}
	for _, name := range sortedNames(cur.Properties) {
		p, ok := prev.Properties[name]
		if !ok {
			kind := NonBreaking
			if request && !cur.Properties[name].Optional {
				kind = Breaking // a new required input
			}
			*out = append(*out, Change{Slug: slug, Field: field + "." + name, Type: kind, Description: "field added"})
			continue
		}
		compare(out, slug, field+"."+name, p, cur.Properties[name], request)
	}
}

// Bump suggests the next version: major when any change breaks, else minor; the first version
// is 1.0.0.
func Bump(previous string, changes []Change) (version, bump string) {
	major, minor, ok := parseVersion(previous)
	if !ok {
		return "1.0.0", "major"
	}
	for _, c := range changes {
		if c.Type == Breaking {
			return fmt.Sprintf("%d.0.0", major+1), "major"
		}
	}
	return fmt.Sprintf("%d.%d.0", major, minor+1), "minor"
}

func parseVersion(v string) (major, minor int, ok bool) {
	parts := strings.SplitN(strings.SplitN(v, "-", 2)[0], ".", 3)
	if len(parts) != 3 {
		return 0, 0, false
	}
	nums := make([]int, 3)
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return 0, 0, false
		}
		nums[i] = n
	}
	return nums[0], nums[1], true
}

// ValidVersion reports whether v is a semantic version (x.y.z, optional pre-release).
func ValidVersion(v string) bool {
	_, _, ok := parseVersion(v)
	return ok && len(v) <= 64
}

func sortedUseCases(m map[string]*UseCase) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
