package change

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Protection lists key prefixes a batch may not touch. A prefix is a DNS
// domain ("kubernetes.io" or "kubernetes.io/"); it protects keys whose
// prefix is that domain or any subdomain of it. Allow lists domains that
// stay writable even though they fall under a protected one.
type Protection struct {
	Prefixes []string
	Allow    []string
}

// DefaultProtection refuses keys under kubernetes.io/ and k8s.io/ (with
// their subdomains, e.g. node.kubernetes.io/) except node-role.kubernetes.io/,
// which clusters use for node roles that operators set by hand.
func DefaultProtection() Protection {
	return Protection{
		Prefixes: []string{"kubernetes.io/", "k8s.io/"},
		Allow:    []string{"node-role.kubernetes.io/"},
	}
}

// With returns p protecting prefixes as well as its own: a setting adds to
// the built-in protections and never replaces them. An allowed domain that
// one of prefixes covers (for example "node-role.kubernetes.io/" given
// explicitly) is no longer allowed: what an operator protects by name wins
// over a default exception.
func (p Protection) With(prefixes ...string) Protection {
	out := Protection{
		Prefixes: slices.Concat(p.Prefixes, prefixes),
		Allow:    slices.Clone(p.Allow),
	}
	out.Allow = slices.DeleteFunc(out.Allow, func(a string) bool {
		return slices.ContainsFunc(prefixes, func(pre string) bool {
			return underDomain(strings.TrimSuffix(a, "/"), strings.TrimSuffix(pre, "/"))
		})
	})
	return out
}

// protected returns the protected prefix that covers key, if any.
func (p Protection) protected(key string) (string, bool) {
	i := strings.LastIndex(key, "/")
	if i < 0 {
		return "", false
	}
	domain := key[:i]
	for _, a := range p.Allow {
		if domain == strings.TrimSuffix(a, "/") {
			return "", false
		}
	}
	for _, pre := range p.Prefixes {
		if d := strings.TrimSuffix(pre, "/"); underDomain(domain, d) {
			return d + "/", true
		}
	}
	return "", false
}

func underDomain(domain, d string) bool {
	return d != "" && (domain == d || strings.HasSuffix(domain, "."+d))
}

// Validate checks s before anything is applied: keys are qualified names,
// values valid label values, taint effects known, no key touched twice, the
// set not empty, no key protected by prot. Each error names its field under
// p (e.g. changes.labels[2].key) and the bad value.
func (s Set) Validate(p *field.Path, prot Protection) field.ErrorList {
	var errs field.ErrorList
	if len(s.Labels) == 0 && len(s.Taints) == 0 {
		errs = append(errs, field.Required(p, "at least one label or taint change"))
	}
	seen := make(map[string]int, len(s.Labels))
	for i, l := range s.Labels {
		lp := p.Child("labels").Index(i)
		errs = append(errs, validateKey(lp.Child("key"), l.Key, prot)...)
		errs = append(errs, validateValue(lp.Child("value"), l.Value, l.Remove)...)
		errs = append(errs, validateExpect(lp.Child("expect"), l.Expect)...)
		if j, ok := seen[l.Key]; ok {
			e := field.Duplicate(lp.Child("key"), l.Key)
			e.Detail = fmt.Sprintf("label key already changed by labels[%d]", j)
			errs = append(errs, e)
			continue
		}
		seen[l.Key] = i
	}
	byKeyEffect := make(map[string]int, len(s.Taints))
	allEffects := make(map[string]int, len(s.Taints)) // key → index of a remove-all
	anyEffect := make(map[string]int, len(s.Taints))  // key → first index touching it
	for i, t := range s.Taints {
		tp := p.Child("taints").Index(i)
		errs = append(errs, validateKey(tp.Child("key"), t.Key, prot)...)
		errs = append(errs, validateValue(tp.Child("value"), t.Value, t.Remove)...)
		errs = append(errs, validateExpect(tp.Child("expect"), t.Expect)...)
		switch {
		case t.Effect == "" && !t.Remove:
			errs = append(errs, field.Required(tp.Child("effect"), fmt.Sprintf("an effect is required to add taint %q (NoSchedule, PreferNoSchedule or NoExecute)", t.Key)))
		case t.Effect != "" && !validEffect(t.Effect):
			errs = append(errs, field.NotSupported(tp.Child("effect"), t.Effect, []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}))
		}
		if t.Effect == "" && t.Expect != nil {
			errs = append(errs, field.Invalid(tp.Child("expect"), *t.Expect, "a precondition needs the taint's effect"))
		}
		k := TaintKey(t.Key, t.Effect).String()
		if j, ok := byKeyEffect[k]; ok {
			errs = append(errs, duplicateTaint(tp, t, j))
			continue
		}
		if j, ok := allEffects[t.Key]; ok {
			errs = append(errs, duplicateTaint(tp, t, j))
			continue
		}
		if j, ok := anyEffect[t.Key]; ok && t.Remove && t.Effect == "" {
			errs = append(errs, duplicateTaint(tp, t, j))
			continue
		}
		byKeyEffect[k] = i
		if _, ok := anyEffect[t.Key]; !ok {
			anyEffect[t.Key] = i
		}
		if t.Remove && t.Effect == "" {
			allEffects[t.Key] = i
		}
	}
	return errs
}

func duplicateTaint(tp *field.Path, t Taint, j int) *field.Error {
	e := field.Duplicate(tp, t.String())
	e.Detail = fmt.Sprintf("taint key %q and effect already changed by taints[%d]", t.Key, j)
	return e
}

func validateKey(p *field.Path, key string, prot Protection) field.ErrorList {
	if msgs := validation.IsQualifiedName(key); len(msgs) > 0 {
		return field.ErrorList{field.Invalid(p, key, strings.Join(msgs, "; "))}
	}
	if pre, ok := prot.protected(key); ok {
		return field.ErrorList{field.Invalid(p, key, fmt.Sprintf("keys under %q are protected and may not be changed", pre))}
	}
	return nil
}

func validateValue(p *field.Path, v string, remove bool) field.ErrorList {
	if remove && v != "" {
		return field.ErrorList{field.Invalid(p, v, "must be empty when removing")}
	}
	if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
		return field.ErrorList{field.Invalid(p, v, strings.Join(msgs, "; "))}
	}
	return nil
}

func validateExpect(p *field.Path, e *Expect) field.ErrorList {
	if e == nil {
		return nil
	}
	if !e.Present && e.Value != "" {
		return field.ErrorList{field.Invalid(p.Child("value"), e.Value, "must be empty when present is false")}
	}
	if msgs := validation.IsValidLabelValue(e.Value); len(msgs) > 0 {
		return field.ErrorList{field.Invalid(p.Child("value"), e.Value, strings.Join(msgs, "; "))}
	}
	return nil
}
