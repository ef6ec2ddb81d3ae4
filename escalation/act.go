package escalation

import (
	"context"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// ActAs applies an action taken by a rota person, already identified by the
// caller, through an interface Klaxon serves itself (via "web"). pageID, if
// set, is the page the person answers: an escalation then applies as of that
// page, so a late tap cannot escalate twice.
func (e *Engine) ActAs(ctx context.Context, id uint64, action notifiers.Action, person, via, pageID string) (notifiers.Outcome, error) {
	return e.apply(ctx, id, action, person, via, pageID)
}
