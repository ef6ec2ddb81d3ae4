package escalation

import (
	"context"

	"github.com/klaxon-oncall/klaxon/notifiers"
)

// ActAs applies an action taken by a rota person, already identified by the
// caller, through an interface Klaxon serves itself (via "web"). pageID, if
// set, is the page the person answers: an escalation then applies as of that
// page, so a late tap cannot escalate twice. It is the local page id that
// Config.Link is given (the web's signed links carry it); the external id a
// channel saw ("<installation>_<id>") is accepted too. A page id of another
// installation or of another incident is refused as unknown.
func (e *Engine) ActAs(ctx context.Context, id uint64, action notifiers.Action, person, via, pageID string) (notifiers.Outcome, error) {
	if pageID != "" {
		local, ok := e.localPageID(pageID)
		if !ok {
			return notifiers.Outcome{}, notifiers.ErrUnknownIncident
		}
		if inc, _, _ := ParsePageID(local); inc != id {
			return notifiers.Outcome{}, notifiers.ErrUnknownIncident
		}
		pageID = local
	}
	return e.apply(ctx, id, action, person, via, pageID)
}
