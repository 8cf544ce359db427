package relay

import (
	"net/url"
)

// upgradeQuery is what the upgrade URL may carry.
type upgradeQuery struct {
	TaskID string // subscribe to this batch at once
	Ticket string // single-use ticket (authentication)
	Token  string // the seed's ?token= (authentication, when enabled)
}

// queryError is a refused upgrade query: the parameter and why. Its text
// never quotes the value.
type queryError struct {
	Field  string // "" when the query as a whole is malformed
	Reason string
}

func (e *queryError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + " " + e.Reason
}

// reasonRepeated refuses a parameter given twice: which one would count is
// a guess the relay does not make.
const reasonRepeated = "given more than once"

// parseUpgradeQuery reads the upgrade URL's raw query strictly: well-formed
// escapes, each known parameter at most once, and ?task_id= passing the
// same check as a message's task_id (taskIDReason), so no id reaches a
// Firestore path unchecked whichever way it came in. Unknown parameters are
// ignored (cache busters, the seed's extras).
func parseUpgradeQuery(raw string) (upgradeQuery, *queryError) {
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return upgradeQuery{}, &queryError{Reason: "malformed query string"}
	}
	var q upgradeQuery
	for _, p := range []struct {
		name string
		dst  *string
	}{{"task_id", &q.TaskID}, {"ticket", &q.Ticket}, {"token", &q.Token}} {
		vs, ok := vals[p.name]
		if !ok {
			continue
		}
		if len(vs) > 1 {
			return upgradeQuery{}, &queryError{Field: p.name, Reason: reasonRepeated}
		}
		*p.dst = vs[0]
	}
	if q.TaskID != "" { // an empty ?task_id= subscribes to nothing, as before
		if r := taskIDReason(q.TaskID); r != "" {
			return upgradeQuery{}, &queryError{Field: "task_id", Reason: r}
		}
	}
	return q, nil
}
