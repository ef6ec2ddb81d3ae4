package escalation

import (
	"reflect"
	"testing"
	"time"
)

// fill sets every field under v to a non-zero value.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)))
			return
		}
		for i := range v.NumField() {
			fill(v.Field(i))
		}
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint64:
		v.SetUint(7)
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		v.SetMapIndex(reflect.ValueOf("k"), reflect.ValueOf("v"))
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range v.Len() {
			fill(v.Index(i))
		}
	default:
		panic("fill: no value for " + v.Type().String())
	}
}

// change alters the n-th value under v (in fill's order) and reports whether
// there was one; *n counts down the values passed.
func change(v reflect.Value, n *int) bool {
	leaf := func(set func()) bool {
		if *n == 0 {
			set()
			return true
		}
		*n--
		return false
	}
	switch v.Kind() {
	case reflect.Struct:
		if t, ok := v.Interface().(time.Time); ok {
			return leaf(func() { v.Set(reflect.ValueOf(t.Add(time.Nanosecond))) })
		}
		for i := range v.NumField() {
			if change(v.Field(i), n) {
				return true
			}
		}
		return false
	case reflect.String:
		return leaf(func() { v.SetString(v.String() + "y") })
	case reflect.Bool:
		return leaf(func() { v.SetBool(!v.Bool()) })
	case reflect.Int, reflect.Int64:
		return leaf(func() { v.SetInt(v.Int() + 1) })
	case reflect.Uint64:
		return leaf(func() { v.SetUint(v.Uint() + 1) })
	case reflect.Map:
		if leaf(func() { v.SetMapIndex(reflect.ValueOf("k"), reflect.ValueOf("w")) }) {
			return true
		}
		if leaf(func() { v.SetMapIndex(reflect.ValueOf("k2"), reflect.ValueOf("v")) }) {
			return true
		}
		return leaf(func() { v.Set(reflect.Zero(v.Type())) })
	case reflect.Slice:
		for i := range v.Len() {
			if change(v.Index(i), n) {
				return true
			}
		}
		return leaf(func() { v.Set(v.Slice(0, v.Len()-1)) })
	}
	panic("change: cannot change " + v.Type().String())
}

// TestSameNoticesEveryField: a change anywhere in an incident, however deep,
// makes it not the same, so a store that skips writing an unchanged incident
// never drops a change. A field added to Incident, Alert or Escalation that
// Same does not compare fails here.
func TestSameNoticesEveryField(t *testing.T) {
	var inc Incident
	fill(reflect.ValueOf(&inc).Elem())
	if c := inc.Clone(); !inc.Same(c) || !c.Same(&inc) {
		t.Fatal("a clone is not the same as its original")
	}
	n := 0
	for ; ; n++ {
		c := inc.Clone()
		k := n
		if !change(reflect.ValueOf(c).Elem(), &k) {
			break
		}
		if inc.Same(c) || c.Same(&inc) {
			t.Errorf("change %d (%s) went unnoticed", n, fieldDiff(&inc, c))
		}
	}
	if n < 40 {
		t.Fatalf("only %d changes tried: the walk missed fields", n)
	}
}

// TestCloneSharesNothing: changing every value of a clone leaves the original
// as it was.
func TestCloneSharesNothing(t *testing.T) {
	var inc, want Incident // filled alike; want is not made by Clone, which is under test
	fill(reflect.ValueOf(&inc).Elem())
	fill(reflect.ValueOf(&want).Elem())
	c := inc.Clone()
	for n := 0; ; n++ {
		k := n
		if !change(reflect.ValueOf(c).Elem(), &k) {
			break
		}
	}
	if !reflect.DeepEqual(inc, want) {
		t.Fatalf("changing a clone changed its original:\n%+v\nwant\n%+v", inc, want)
	}
}

func fieldDiff(a, b *Incident) string {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for i := range va.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			return va.Type().Field(i).Name
		}
	}
	return "?"
}
