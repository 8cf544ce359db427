package hclcheck

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// promKeywords are PromQL words that are neither metrics nor labels.
// Aggregations may be followed by a by/without clause before their "(".
var promKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless", "inf", "nan",
	"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}

type promToken struct {
	kind byte // 'i' identifier, 's' string, 'n' number, or the punctuation itself
	text string
}

// lexPromQL splits a PromQL query into identifiers, strings, numbers and
// punctuation (operators are kept one byte at a time; durations become
// numbers).
func lexPromQL(q string) ([]promToken, error) {
	var out []promToken
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(q) && q[j] != c {
				if q[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(q) {
				return nil, fmt.Errorf("unterminated string at %d in %q", i, q)
			}
			s := q[i : j+1]
			if c == '\'' {
				s = `"` + strings.ReplaceAll(s[1:len(s)-1], `"`, `\"`) + `"`
			}
			u, err := strconv.Unquote(s)
			if err != nil {
				return nil, fmt.Errorf("bad string %s in %q: %w", q[i:j+1], q, err)
			}
			out = append(out, promToken{'s', u})
			i = j + 1
		case isIdentStart(c):
			j := i
			for j < len(q) && (isIdentStart(q[j]) || (q[j] >= '0' && q[j] <= '9')) {
				j++
			}
			out = append(out, promToken{'i', q[i:j]})
			i = j
		case (c >= '0' && c <= '9') || c == '.':
			j := i
			for j < len(q) && (isIdentStart(q[j]) || (q[j] >= '0' && q[j] <= '9') || q[j] == '.' || ((q[j] == '-' || q[j] == '+') && (q[j-1] == 'e' || q[j-1] == 'E'))) {
				j++
			}
			out = append(out, promToken{'n', q[i:j]})
			i = j
		default:
			out = append(out, promToken{c, string(c)})
			i++
		}
	}
	return out, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// PromQLNames returns the metric names a PromQL query selects (bare
// `name{...}` or UTF-8 `{"name", ...}`) and the label names it matches on
// or aggregates by, each sorted and without duplicates.
func PromQLNames(q string) (metrics, labels []string, err error) {
	toks, err := lexPromQL(q)
	if err != nil {
		return nil, nil, err
	}
	depth := map[byte]int{}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		next := func(k int) promToken {
			if i+k < len(toks) {
				return toks[i+k]
			}
			return promToken{}
		}
		switch t.kind {
		case '[':
			depth['[']++
		case ']':
			depth['[']--
		case '{':
			// A selector: comma-separated items, each a lone name string
			// or label op value.
			j := i + 1
			for j < len(toks) && toks[j].kind != '}' {
				item := toks[j]
				switch {
				case item.kind == ',':
					j++
					continue
				case (item.kind == 's' || item.kind == 'i') && j+1 < len(toks) && (toks[j+1].kind == ',' || toks[j+1].kind == '}'):
					if item.kind != 's' {
						return nil, nil, fmt.Errorf("selector item %q without a matcher in %q", item.text, q)
					}
					metrics = append(metrics, item.text)
					j++
				case item.kind == 's' || item.kind == 'i':
					labels = append(labels, item.text)
					j++
					for j < len(toks) && (toks[j].kind == '=' || toks[j].kind == '!' || toks[j].kind == '~') {
						j++
					}
					if j >= len(toks) || toks[j].kind != 's' {
						return nil, nil, fmt.Errorf("label matcher %q without a string value in %q", item.text, q)
					}
					j++
				default:
					return nil, nil, fmt.Errorf("unexpected %q in a selector of %q", item.text, q)
				}
			}
			if j >= len(toks) {
				return nil, nil, fmt.Errorf("unclosed selector in %q", q)
			}
			i = j
		case 'i':
			word := strings.ToLower(t.text)
			switch {
			case depth['['] > 0:
			case word == "by" || word == "without" || word == "on" || word == "ignoring" || word == "group_left" || word == "group_right":
				// by (a, "b.c"): labels.
				if next(1).kind != '(' {
					continue
				}
				j := i + 2
				for j < len(toks) && toks[j].kind != ')' {
					if toks[j].kind == 'i' || toks[j].kind == 's' {
						labels = append(labels, toks[j].text)
					}
					j++
				}
				i = j
			case slices.Contains(promKeywords, word):
			case next(1).kind == '(':
				// A function or an aggregation.
			default:
				metrics = append(metrics, t.text)
			}
		}
	}
	if depth['['] != 0 {
		return nil, nil, errors.New("unbalanced [ ] in " + q)
	}
	slices.Sort(metrics)
	slices.Sort(labels)
	return slices.Compact(metrics), slices.Compact(labels), nil
}
