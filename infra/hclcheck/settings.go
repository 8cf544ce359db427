package hclcheck

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// backticked matches a `NAME` in a Markdown table cell.
var backticked = regexp.MustCompile("`([A-Z][A-Z0-9_]*)`")

// ConfigDefaults reads the settings tables of a Markdown document (such as
// docs/config.md): rows "| `NAME` | default | meaning |", where the first
// cell may name several settings ("`A` / `B`", "`A`, `B`"). It returns each
// setting's default cell, trimmed. A setting listed in several tables keeps
// the first default that is not "required".
func ConfigDefaults(md []byte) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(string(md), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 3 {
			continue
		}
		def := strings.TrimSpace(cells[1])
		for _, m := range backticked.FindAllStringSubmatch(cells[0], -1) {
			if old, ok := out[m[1]]; !ok || (hasNoDefault(old) && !hasNoDefault(def)) {
				out[m[1]] = def
			}
		}
	}
	return out
}

// hasNoDefault reports whether a default cell says the setting must be set.
func hasNoDefault(def string) bool {
	return def == "" || strings.EqualFold(def, "required") || def == "—" || def == "-"
}

// CheckSettings reports every setting code reads that resource (an address)
// neither sets nor may leave unset: a setting may be left to its default
// only when defaults (ConfigDefaults) documents one. Names the platform
// sets (PORT and the like) count as set.
func CheckSettings(resource string, vars []EnvVar, code *Code, defaults map[string]string) []Problem {
	set := map[string]bool{}
	for _, v := range vars {
		if v.Resource == resource {
			set[v.Name] = true
		}
	}
	var names []string
	for n := range code.Env {
		names = append(names, n)
	}
	sort.Strings(names)
	var ps []Problem
	for _, n := range names {
		if set[n] || reserved[n] {
			continue
		}
		def, ok := defaults[n]
		switch {
		case !ok:
			ps = append(ps, Problem{Msg: fmt.Sprintf("%s: %s (read at %s) is neither set by %s nor documented with a default in docs/config.md", resource, n, code.Env[n], resource)})
		case hasNoDefault(def):
			ps = append(ps, Problem{Msg: fmt.Sprintf("%s: %s (read at %s) has no default (%q in docs/config.md) and %s does not set it", resource, n, code.Env[n], def, resource)})
		}
	}
	return ps
}
