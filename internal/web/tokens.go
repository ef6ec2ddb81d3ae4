package web

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"strings"
)

// Tokens maps a person's sign-in token to their rota id. Per-person API
// tokens (issue 12) can implement it; TokenFile is the minimal built-in one.
type Tokens interface {
	Person(token string) (person string, ok bool)
}

// MinTokenLen is the shortest sign-in token accepted.
const MinTokenLen = 20

// TokenFile is a set of sign-in tokens read from a file with one
// "person-id token" pair per line (blank lines and # comments ignored).
// Only hashes of the tokens are kept in memory.
type TokenFile struct {
	byHash map[[32]byte]string
}

// ReadTokenFile reads and checks a token file. Errors name the line, never
// the token.
func ReadTokenFile(path string) (*TokenFile, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("web tokens: %w", err)
	}
	return ParseTokens(path, raw)
}

// ParseTokens parses a token file's content; name is used in errors.
func ParseTokens(name string, raw []byte) (*TokenFile, error) {
	tf := &TokenFile{byHash: map[[32]byte]string{}}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("%s:%d: want \"person-id token\"", name, n)
		}
		if !personID.MatchString(f[0]) {
			return nil, fmt.Errorf("%s:%d: invalid person id", name, n)
		}
		if len(f[1]) < MinTokenLen {
			return nil, fmt.Errorf("%s:%d: the token for %s is shorter than %d characters", name, n, f[0], MinTokenLen)
		}
		h := sha256.Sum256([]byte(f[1]))
		if _, dup := tf.byHash[h]; dup {
			return nil, fmt.Errorf("%s:%d: this token is already given to someone", name, n)
		}
		tf.byHash[h] = f[0]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return tf, nil
}

// Person implements Tokens.
func (tf *TokenFile) Person(token string) (string, bool) {
	if tf == nil || len(token) < MinTokenLen || len(token) > 512 {
		return "", false
	}
	p, ok := tf.byHash[sha256.Sum256([]byte(token))]
	return p, ok
}
