package web

import (
	"github.com/klaxon-oncall/klaxon/internal/auth"
)

// Tokens maps a person's sign-in token to their rota id.
type Tokens interface {
	Person(token string) (person string, ok bool)
}

// maxTokenLen bounds a sign-in token before it is hashed.
const maxTokenLen = 512

// PersonTokens makes the web's sign-in accept exactly the per-person API
// tokens of a (the token file `klaxon token create --person` writes to): a
// person's token signs that person in. The shared admin token belongs to
// nobody, so it signs nobody in; feed tokens are not API tokens and are
// refused too.
func PersonTokens(a auth.Authenticator) Tokens { return personTokens{a} }

type personTokens struct{ a auth.Authenticator }

// Person implements Tokens.
func (p personTokens) Person(token string) (string, bool) {
	if p.a == nil || token == "" || len(token) > maxTokenLen {
		return "", false
	}
	person, admin, ok := p.a.Authenticate(token)
	if !ok || admin || person == "" {
		return "", false
	}
	return person, true
}
