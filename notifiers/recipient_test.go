package notifiers

import "testing"

func TestRecipientDisplayNameAndMissingContact(t *testing.T) {
	full := Recipient{PersonID: "alice", Name: "Alice", Phone: "+15555550101", MatrixID: "@alice:test"}
	bare := Recipient{PersonID: "bob"}
	for _, tc := range []struct {
		r    Recipient
		c    Channel
		name string
		miss string
	}{
		{full, Matrix, "Alice", ""},
		{full, SMS, "Alice", ""},
		{full, Phone, "Alice", ""},
		{full, PagerDuty, "Alice", ""},
		{bare, Matrix, "bob", "Matrix id"},
		{bare, SMS, "bob", "phone number"},
		{bare, Phone, "bob", "phone number"},
		{bare, PagerDuty, "bob", ""}, // PagerDuty pages its own users through the routing key
	} {
		if got := tc.r.DisplayName(); got != tc.name {
			t.Errorf("%+v.DisplayName() = %q, want %q", tc.r, got, tc.name)
		}
		if got := tc.r.MissingContact(tc.c); got != tc.miss {
			t.Errorf("%+v.MissingContact(%s) = %q, want %q", tc.r, tc.c, got, tc.miss)
		}
	}
}
