package faketwilio

import (
	"encoding/xml"
	"fmt"
	"net/url"
	"strings"
)

// Node is one TwiML element as the interpreter reads it.
type Node struct {
	XMLName  xml.Name
	Attrs    []xml.Attr `xml:",any,attr"`
	Text     string     `xml:",chardata"`
	Children []Node     `xml:",any"`
}

// Attr returns attribute name's value, or "".
func (n Node) Attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// ParseTwiML parses a TwiML document; the root must be <Response>.
func ParseTwiML(doc string) (Node, error) {
	var n Node
	if err := xml.Unmarshal([]byte(doc), &n); err != nil {
		return Node{}, fmt.Errorf("12100 document parse failure: %w", err)
	}
	if n.XMLName.Local != "Response" {
		return Node{}, fmt.Errorf("12100 document parse failure: root is <%s>, not <Response>", n.XMLName.Local)
	}
	return n, nil
}

// gatherState is a <Gather> waiting for keys.
type gatherState struct {
	action, method      string
	numDigits           int
	actionOnEmptyResult bool
	rest                []Node
	docURL              string
}

// resolve makes ref absolute against base, as Twilio resolves relative URLs.
func resolve(base, ref string) string {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return base
	}
	b, err := url.Parse(base)
	if err != nil {
		return ref
	}
	r, err := url.Parse(ref)
	if err != nil {
		return ref
	}
	return b.ResolveReference(r).String()
}

// maxRedirects stops a TwiML loop, as Twilio eventually does.
const maxRedirects = 20

// run executes verbs from a document fetched at docURL until the call waits
// at a Gather or ends. Said text is appended to c's transcript.
func (c *Call) run(verbs []Node, docURL string) {
	c.srv.t.Helper()
	for redirects := 0; ; {
		next, nextURL, method, params := c.exec(verbs, docURL)
		if next == "" {
			return
		}
		redirects++
		if redirects > maxRedirects {
			c.fail("too many redirects")
			return
		}
		doc, ok := c.fetch(method, next, params)
		if !ok {
			return
		}
		verbs, docURL = doc.Children, nextURL
	}
}

// exec runs verbs; it returns a URL to fetch next (Redirect), or "" when the
// call is waiting at a Gather or has ended.
func (c *Call) exec(verbs []Node, docURL string) (next, nextURL, method string, params url.Values) {
	for i, v := range verbs {
		switch v.XMLName.Local {
		case "Say":
			c.say(v.Text)
		case "Play":
			c.say("[play " + strings.TrimSpace(v.Text) + "]")
		case "Pause":
		case "Gather":
			for _, in := range v.Children {
				switch in.XMLName.Local {
				case "Say":
					c.say(in.Text)
				case "Play":
					c.say("[play " + strings.TrimSpace(in.Text) + "]")
				case "Pause":
				default:
					c.fail("<" + in.XMLName.Local + "> is not allowed in <Gather>")
					return
				}
			}
			g := &gatherState{
				action:              resolve(docURL, v.Attr("action")),
				method:              strings.ToUpper(orDefault(v.Attr("method"), "POST")),
				actionOnEmptyResult: v.Attr("actionOnEmptyResult") == "true",
				rest:                verbs[i+1:],
				docURL:              docURL,
			}
			fmt.Sscan(v.Attr("numDigits"), &g.numDigits)
			if in := v.Attr("input"); in != "" && !strings.Contains(in, "dtmf") {
				c.fail("Gather input " + in + " takes no keys")
				return
			}
			c.gather = g
			return
		case "Redirect":
			u := resolve(docURL, v.Text)
			return u, u, strings.ToUpper(orDefault(v.Attr("method"), "POST")), c.callParams()
		case "Hangup", "Reject":
			c.end("completed")
			return
		default:
			c.fail("unknown verb <" + v.XMLName.Local + ">")
			return
		}
	}
	c.end("completed") // the document ran out: Twilio hangs up
	return
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
