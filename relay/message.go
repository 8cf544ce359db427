package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nodebatch/nodebatch/shared/jsonstrict"
	"github.com/nodebatch/nodebatch/shared/model"
)

// Client message types.
const (
	msgSubscribe    = "subscribe"     // {"type":"subscribe","task_id":"…"}
	msgSubscribeAll = "subscribe_all" // {"type":"subscribe_all"} or with "all_users":true (admins)
	msgUnsubscribe  = "unsubscribe"   // {"type":"unsubscribe","task_id":"…"}
)

// clientMessage is what a client may send.
type clientMessage struct {
	Type     string `json:"type"`
	TaskID   string `json:"task_id,omitempty"`
	AllUsers bool   `json:"all_users,omitempty"`
}

// decodeClientMessage parses one client message strictly (jsonstrict): one
// JSON object, known fields only, matched case-sensitively, none twice, a
// known type, and a well-formed task id where needed. Its errors are safe
// to send back to the client.
func decodeClientMessage(data []byte) (clientMessage, error) {
	var m clientMessage
	if err := jsonstrict.Decode(data, &m); err != nil {
		return clientMessage{}, fmt.Errorf("bad message: %s", describeJSONError(err))
	}
	switch m.Type {
	case msgSubscribe, msgUnsubscribe:
		if err := checkTaskID(m.TaskID); err != nil {
			return clientMessage{}, err
		}
		if m.AllUsers {
			return clientMessage{}, fmt.Errorf("bad message: all_users only goes with %q", msgSubscribeAll)
		}
	case msgSubscribeAll:
		if m.TaskID != "" {
			return clientMessage{}, fmt.Errorf("bad message: %q takes no task_id", msgSubscribeAll)
		}
	case "":
		return clientMessage{}, errors.New("bad message: type is required")
	default:
		return clientMessage{}, fmt.Errorf("bad message: unknown type (want %s, %s or %s)", msgSubscribe, msgSubscribeAll, msgUnsubscribe)
	}
	return m, nil
}

// checkTaskID is the relay's one check of a batch id from outside (a
// message's task_id, the upgrade's ?task_id=): model.ValidateID, worded for
// the client. Every id that reaches a Firestore path passes it first.
func checkTaskID(id string) error {
	if r := taskIDReason(id); r != "" {
		return errors.New("bad message: task_id " + r)
	}
	return nil
}

// taskIDReason says why id is not a batch id ("" when it is one), without
// quoting it.
func taskIDReason(id string) string {
	if id == "" {
		return "is required"
	}
	if err := model.ValidateID(id); err != nil {
		return strings.TrimPrefix(err.Error(), model.ErrInvalidID.Error()+": ")
	}
	return ""
}

func knownField(f string) bool { return f == "type" || f == "task_id" || f == "all_users" }

// describeJSONError says what is wrong without quoting the input back.
func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var strict *jsonstrict.Error
	switch {
	case errors.Is(err, jsonstrict.ErrTrailing):
		return "one JSON object per message"
	case errors.As(err, &strict) && strict.Duplicate && knownField(strict.Field):
		return fmt.Sprintf("field %q given twice", strict.Field)
	case errors.As(err, &strict) && strict.Duplicate:
		return "a field given twice"
	case errors.As(err, &strict):
		return "not a message object (known fields: type, task_id, all_users; names are case-sensitive)"
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q has the wrong type", typ.Field)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "incomplete JSON"
	}
	return "not a message object (known fields: type, task_id, all_users)"
}
