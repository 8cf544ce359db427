// Package setting reads one environment setting for the services' loaders
// (functions/config, relay/config), with one rule for all: unset (or
// empty) takes the default; a value that does not parse, or a number below
// its minimum, is an error naming the setting, never a silent default.
package setting

import (
	"fmt"
	"strconv"
	"strings"
)

// String is the setting name, or def when it is unset.
func String(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// Int is the integer setting name, def when unset; a value below min is
// refused.
func Int(getenv func(string) string, name string, def, min int) (int, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		return 0, fmt.Errorf("load config: %s=%q: want an integer >= %d", name, v, min)
	}
	return n, nil
}

// Bool is the boolean setting name (strconv.ParseBool), def when unset.
func Bool(getenv func(string) string, name string, def bool) (bool, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("load config: %s=%q: want true or false", name, v)
	}
	return b, nil
}

// List is the comma-separated setting name, items trimmed, empty items
// dropped; nil when unset.
func List(getenv func(string) string, name string) []string {
	var out []string
	for f := range strings.SplitSeq(getenv(name), ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
