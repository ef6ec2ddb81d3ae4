package main

import (
	"strings"
	"testing"
)

// TestAttackFormatCharacters: labels carrying bidirectional overrides and
// other Unicode format characters (category Cf) would show one text and
// mean another; they are stripped from what the API, the web pages and the
// channels show.
func TestAttackFormatCharacters(t *testing.T) {
	data := t.TempDir()
	alice := aliceTokenBeforeStart(t, data)
	k := startKlaxon(t, data, nil, nil)
	labels := `"alertname":"Disk\u202eFull\u2066","severity":"crit\u200bical","instance":"db\u00ad1"`
	id := k.webhook(t, "g1", labels)
	_, api := do(t, bearer(newReq(t, "GET", k.base+"/api/v1/incidents/"+id, nil), acAPIToken))
	session := signIn(t, k.base, alice)
	_, page := do(t, cookieReq(newReq(t, "GET", k.base+"/incidents/"+id, nil), session))
	_, list := do(t, cookieReq(newReq(t, "GET", k.base+"/", nil), session))
	for name, shown := range map[string]string{"API": api, "incident page": page, "list": list} {
		for _, bad := range []string{"\u202e", "\u2066", "\u200b", "\u00ad", `\u202e`, `\u2066`, `\u200b`, `\u00ad`, "&#8238;"} {
			if strings.Contains(shown, bad) {
				t.Errorf("%s shows %q", name, bad)
			}
		}
	}
	if !strings.Contains(api, "DiskFull") || !strings.Contains(page, "DiskFull") {
		t.Errorf("the alert name is not shown: api %v page %v", strings.Contains(api, "DiskFull"), strings.Contains(page, "DiskFull"))
	}
}
