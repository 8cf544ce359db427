package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Threshold is a batch's failure threshold (max_failures): a count ("10"
// or 10) or a percentage of the attempt's nodes ("5%"). Empty means none.
// It lives with the model, not with the HTTP request, because the patch
// path (functions/runner) resolves it on every failure.
type Threshold string

// UnmarshalJSON accepts a JSON string or a JSON number.
func (t *Threshold) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*t = Threshold(n.String())
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("max_failures must be a number or a string such as \"5%\"")
	}
	*t = Threshold(s)
	return nil
}

// Limit resolves t against an attempt of total nodes: the number of
// failures that stops the batch, or 0 when there is no threshold. A count
// is a positive decimal integer; a percentage is a finite decimal number
// in (0, 100] written with digits and at most one '.', so "NaN%", "Inf%",
// "1e400%", "-0%" and "0x1p1%" (all of which strconv.ParseFloat reads) are
// refused.
func (t Threshold) Limit(total int) (int, error) {
	s := strings.TrimSpace(string(t))
	if s == "" {
		return 0, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := percent(p)
		if err != nil {
			return 0, err
		}
		n := int(f / 100 * float64(total))
		return max(n, 1), nil
	}
	if !decimal(s, false) {
		return 0, fmt.Errorf("must be a positive integer or a percentage such as \"5%%\"")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("must be a positive integer or a percentage such as \"5%%\"")
	}
	return n, nil
}

// percent parses the number of a percentage: finite, in (0, 100].
func percent(p string) (float64, error) {
	bad := fmt.Errorf("percentage must be a decimal number in (0, 100], such as \"5%%\" or \"0.5%%\"")
	if !decimal(p, true) {
		return 0, bad
	}
	f, err := strconv.ParseFloat(p, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 || f > 100 {
		return 0, bad
	}
	return f, nil
}

// decimal reports whether s is digits, optionally (when frac) with one '.'
// between digits: no sign, exponent, underscore, hex or named value.
func decimal(s string, frac bool) bool {
	if s == "" {
		return false
	}
	dot := -1
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
		case c == '.' && frac && dot < 0:
			dot = i
		default:
			return false
		}
	}
	return dot != 0 && dot != len(s)-1
}
