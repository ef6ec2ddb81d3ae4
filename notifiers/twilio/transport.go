package twilio

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/twilio/twilio-go/client"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"
)

// rewriter sends twilio-go's requests (always built for https://api.twilio.com)
// to the configured API URL, attaches the caller's context (twilio-go takes
// none) and remembers the last response's Retry-After header.
type rewriter struct {
	base   http.RoundTripper
	target *url.URL
	ctx    context.Context

	mu         sync.Mutex
	retryAfter string
}

func (rw *rewriter) RoundTrip(req *http.Request) (*http.Response, error) {
	out := req.Clone(rw.ctx)
	out.URL.Scheme = rw.target.Scheme
	out.URL.Host = rw.target.Host
	if p := strings.TrimRight(rw.target.Path, "/"); p != "" {
		out.URL.Path = p + req.URL.Path
		out.URL.RawPath = ""
	}
	out.Host = rw.target.Host
	base := rw.base
	if base == nil {
		base = defaultTransport
	}
	resp, err := base.RoundTrip(out)
	if resp != nil {
		rw.mu.Lock()
		rw.retryAfter = resp.Header.Get("Retry-After")
		rw.mu.Unlock()
	}
	return resp, err
}

// defaultTransport carries API calls when the configured client has no
// transport of its own. http.DefaultTransport keeps only 2 idle connections
// per host, so a burst of texts would set up a new TLS connection for all but
// two of them every time; this one keeps one for every send the engine may
// have in flight on a channel (32) and the other channel's too.
var defaultTransport = func() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return t
}()

func (rw *rewriter) lastRetryAfter() string {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return rw.retryAfter
}

// api returns a Twilio API service bound to ctx for one operation. The
// client is cheap to build; a fresh one per call carries the context and
// gives an unshared Retry-After record. TWILIO_EDGE and TWILIO_REGION from
// the environment are deliberately not consulted: APIURL is the only target.
func (t *Twilio) api(ctx context.Context) (*openapi.ApiService, *rewriter) {
	rw := &rewriter{base: t.cfg.HTTPClient.Transport, target: t.apiURL, ctx: ctx}
	hc := &http.Client{
		Transport: rw,
		Timeout:   t.cfg.HTTPClient.Timeout,
		Jar:       nil,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	c := &client.Client{
		Credentials: client.NewCredentials(t.cfg.AccountSID, t.cfg.AuthToken),
		HTTPClient:  hc,
	}
	c.SetAccountSid(t.cfg.AccountSID)
	return openapi.NewApiService(&client.RequestHandler{Client: c}), rw
}
