package twilio

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/twilio/twilio-go/client"
)

// callbackPrefix is where the server mounts Handler.
const callbackPrefix = "/webhook/twilio/"

// maxCallbackBody bounds a callback's form body; Twilio's are a few KB.
const maxCallbackBody = 64 << 10

// respondTimeout bounds the engine's work for one callback; Twilio gives
// up on a webhook after 15 seconds.
const respondTimeout = 10 * time.Second

// callback is one verified Twilio callback.
type callback struct {
	endpoint string
	query    url.Values
	form     url.Values
	pageID   string
	incident uint64
}

// Handler serves Twilio's callbacks under /webhook/twilio/: voice (TwiML
// when a call is answered), gather (keypresses), status (call progress),
// sms (inbound texts) and sms-status (text delivery). Every request must be
// a POST form carrying a valid X-Twilio-Signature for PublicURL plus the
// path and query it was sent to.
func (t *Twilio) Handler() http.Handler {
	return http.HandlerFunc(t.serveHTTP)
}

func (t *Twilio) serveHTTP(w http.ResponseWriter, r *http.Request) {
	i := strings.LastIndex(r.URL.Path, callbackPrefix)
	endpoint := ""
	if i >= 0 {
		endpoint = r.URL.Path[i+len(callbackPrefix):]
	}
	handlers := map[string]func(context.Context, *callback) (string, string, error){
		"voice":      t.onVoice,
		"gather":     t.onGather,
		"status":     t.onStatus,
		"sms":        t.onSMS,
		"sms-status": t.onSMSStatus,
	}
	h, ok := handlers[endpoint]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		http.Error(w, "expected a form body", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCallbackBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		http.Error(w, "malformed form", http.StatusBadRequest)
		return
	}
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		http.Error(w, "malformed query", http.StatusBadRequest)
		return
	}
	fullURL := t.cfg.PublicURL + callbackPrefix + endpoint
	if r.URL.RawQuery != "" {
		fullURL += "?" + r.URL.RawQuery
	}
	params := make(map[string]string, len(form))
	for k, v := range form {
		params[k] = v[0]
	}
	sig := r.Header.Get("X-Twilio-Signature")
	validator := client.NewRequestValidator(t.cfg.AuthToken)
	if sig == "" || !validator.Validate(fullURL, params, sig) {
		t.cfg.Logger.Warn("twilio: callback with a bad signature refused", "endpoint", endpoint, "remote", r.RemoteAddr)
		http.Error(w, "invalid signature", http.StatusForbidden)
		return
	}
	cb := &callback{endpoint: endpoint, query: query, form: form}
	if endpoint != "sms" {
		cb.pageID = query.Get("page")
		n, err := strconv.ParseUint(query.Get("incident"), 10, 64)
		if cb.pageID == "" || err != nil {
			http.Error(w, "missing page or incident", http.StatusBadRequest)
			return
		}
		cb.incident = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), respondTimeout)
	defer cancel()
	ctype, out, err := h(ctx, cb)
	if err != nil {
		t.cfg.Logger.Error("twilio: callback failed", "endpoint", endpoint, "page", cb.pageID, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if ctype == "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", ctype)
	_, _ = io.WriteString(w, out)
}

const xmlType = "text/xml; charset=utf-8"
