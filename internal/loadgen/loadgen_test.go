package loadgen

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPostSendsWhatAServerSees: the request arrives as Alertmanager would
// send it (method, path, token, type, body), several over one connection,
// and the status comes back.
func TestPostSendsWhatAServerSees(t *testing.T) {
	var got []string
	conns := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		conns[r.RemoteAddr] = true
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+r.Header.Get("Content-Type")+" "+string(body))
		if strings.Contains(string(body), "bad") {
			http.Error(w, "no", http.StatusBadRequest)
			return
		}
		w.Write([]byte("ok " + string(body)))
	}))
	defer srv.Close()
	c, err := Dial(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		body, answer string
		want         int
	}{{`{"a":1}`, `ok {"a":1}`, 200}, {`{"bad":1}`, "no\n", 400}, {`{"a":2}`, `ok {"a":2}`, 200}} {
		code, answer, err := c.Post("/webhook/alertmanager", "tok", []byte(tc.body))
		if err != nil || code != tc.want || string(answer) != tc.answer {
			t.Fatalf("Post(%s) = %d, %q, %v; want %d, %q", tc.body, code, answer, err, tc.want, tc.answer)
		}
	}
	want := `POST /webhook/alertmanager Bearer tok application/json {"a":1}`
	if len(got) != 3 || got[0] != want || len(conns) != 1 {
		t.Fatalf("server saw %q over %d connections, want 3 requests starting with %q over 1", got, len(conns), want)
	}
}

// TestPostFailsWhenTheServerHangsUp: a server that closes the connection is
// an error, not a status.
func TestPostFailsWhenTheServerHangsUp(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj, _ := w.(http.Hijacker)
		c, _, _ := hj.Hijack()
		c.Close()
	}))
	defer srv.Close()
	c, err := Dial(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if code, _, err := c.Post("/", "tok", []byte("{}")); err == nil {
		t.Fatalf("Post to a server that hung up = %d, nil; want an error", code)
	}
}
