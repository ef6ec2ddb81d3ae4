package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/klaxon-oncall/klaxon/escalation"
)

// KeyFile is the name of the signing key's file in the data directory.
const KeyFile = "web.key"

const keySize = 32

// LoadKey returns the server's signing key from dir/web.key, creating it
// (32 random bytes, mode 0600) the first time. A key file that others can
// read, or of the wrong size, is an error: links signed with a leaked key
// could act for anyone.
func LoadKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, KeyFile)
	for range 2 {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			key := make([]byte, keySize)
			_, _ = rand.Read(key)
			_, err = f.Write(key)
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				_ = os.Remove(path)
				return nil, fmt.Errorf("creating the web signing key %s: %w", path, err)
			}
			return key, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("creating the web signing key %s: %w", path, err)
		}
		key, err := readKey(path)
		if errors.Is(err, errEmptyKey) {
			continue // another process is creating it; it wrote nothing yet
		}
		return key, err
	}
	return readKey(path)
}

var errEmptyKey = errors.New("empty key file")

func readKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the web signing key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading the web signing key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("the web signing key %s is readable by others (mode %s): chmod 600 it", path, fi.Mode().Perm())
	}
	key, err := io.ReadAll(io.LimitReader(f, keySize+1))
	if err != nil {
		return nil, fmt.Errorf("reading the web signing key: %w", err)
	}
	if len(key) == 0 {
		return nil, errEmptyKey
	}
	if len(key) != keySize {
		return nil, fmt.Errorf("the web signing key %s has %d bytes, want %d: delete it to make a new one (every link sent so far stops working)", path, len(key), keySize)
	}
	return key, nil
}

// Signer makes and checks signed links, session cookies and CSRF tokens,
// each with its own key derived from the server key.
type Signer struct {
	link, session, csrf []byte
}

// NewSigner derives a Signer's keys from the server key.
func NewSigner(key []byte) *Signer {
	derive := func(purpose string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte("klaxon web " + purpose))
		return m.Sum(nil)
	}
	return &Signer{link: derive("link"), session: derive("session"), csrf: derive("csrf")}
}

func mac(key []byte, parts ...string) string {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// Claim is what a valid signed link grants: acting on one incident as one
// person, as of one page, until it expires.
type Claim struct {
	PageID   string // the page the link was sent in, "<incident>-<seq>"
	Incident uint64
	Person   string // rota id
	Expires  time.Time
}

// Link errors.
var (
	// ErrLinkInvalid: the link was not made by this server or was altered.
	ErrLinkInvalid = errors.New("this link is not valid: it was altered or was not made by this Klaxon")
	// ErrLinkExpired: the link was genuine but is past its expiry.
	ErrLinkExpired = errors.New("this link has expired")
)

var personID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// LinkToken signs a link token for person and page, valid until expires:
// "<page>.<expiry base 36>.<mac>.<person>", about 45 characters.
func (s *Signer) LinkToken(pageID, person string, expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 36)
	return pageID + "." + exp + "." + mac(s.link, pageID, person, exp) + "." + person
}

// maxToken bounds a token before any work is done on it.
const maxToken = 200

// VerifyLink checks a link token at now.
func (s *Signer) VerifyLink(token string, now time.Time) (Claim, error) {
	if len(token) > maxToken {
		return Claim{}, ErrLinkInvalid
	}
	parts := strings.SplitN(token, ".", 4)
	if len(parts) != 4 {
		return Claim{}, ErrLinkInvalid
	}
	pageID, exp, sig, person := parts[0], parts[1], parts[2], parts[3]
	if !hmac.Equal([]byte(sig), []byte(mac(s.link, pageID, person, exp))) {
		return Claim{}, ErrLinkInvalid
	}
	inc, _, ok := escalation.ParsePageID(pageID)
	secs, err := strconv.ParseInt(exp, 36, 64)
	if !ok || err != nil || !personID.MatchString(person) {
		return Claim{}, ErrLinkInvalid
	}
	c := Claim{PageID: pageID, Incident: inc, Person: person, Expires: time.Unix(secs, 0)}
	if !now.Before(c.Expires) {
		return c, ErrLinkExpired
	}
	return c, nil
}

// sessionCookie signs a session for person until expires: "<expiry>.<mac>.<person>".
func (s *Signer) sessionCookie(person string, expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 36)
	return exp + "." + mac(s.session, person, exp) + "." + person
}

// verifySession returns the person a session cookie names, if it is genuine
// and unexpired at now.
func (s *Signer) verifySession(v string, now time.Time) (string, bool) {
	if len(v) > maxToken {
		return "", false
	}
	parts := strings.SplitN(v, ".", 3)
	if len(parts) != 3 || !hmac.Equal([]byte(parts[1]), []byte(mac(s.session, parts[2], parts[0]))) {
		return "", false
	}
	secs, err := strconv.ParseInt(parts[0], 36, 64)
	if err != nil || !now.Before(time.Unix(secs, 0)) {
		return "", false
	}
	return parts[2], true
}

// csrfToken binds a form to what authorises it (a link token or a session
// cookie): a page of another site cannot know it.
func (s *Signer) csrfToken(subject string) string { return mac(s.csrf, subject) }

func (s *Signer) csrfOK(subject, got string) bool {
	return got != "" && hmac.Equal([]byte(got), []byte(s.csrfToken(subject)))
}
