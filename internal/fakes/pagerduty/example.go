package fakepagerduty

import "time"

// ExampleNow is the instant the example account is meant to be read at:
// both of its schedules' time zones change clocks in the four weeks after
// it (Europe/Berlin on 2026-10-25, America/New_York on 2026-11-01).
var ExampleNow = time.Date(2026, 10, 20, 12, 0, 0, 0, time.UTC)

// AddExampleAccount replaces the default user and service with a small
// account like a team's: four users with phone and SMS contact methods; a
// schedule "Ops" in New York with a weekly layer, a layer restricted to
// weekday office hours above it, and an override; a schedule "Database" in
// Berlin with daily turns; a schedule "Weekend" no escalation policy uses,
// restricted to weekends; two escalation policies (one round robin) and
// three services.
func (s *Server) AddExampleAccount() {
	s.RemoveUser(DefaultUserID)
	s.RemoveService(DefaultServiceID)
	for _, u := range []User{
		{ID: "PANN001", Name: "Ann Able", Email: "ann@example.org", TimeZone: "America/New_York", ContactMethods: []ContactMethod{
			{Type: "phone_contact_method", Label: "Mobile", Address: "5555550101", CountryCode: 1},
			{Type: "sms_contact_method", Label: "Mobile", Address: "5555550101", CountryCode: 1},
			{Type: "email_contact_method", Label: "Work", Address: "ann@example.org"},
		}},
		{ID: "PBEN002", Name: "Ben Best", Email: "ben@example.org", ContactMethods: []ContactMethod{
			{Type: "phone_contact_method", Label: "Mobile", Address: "555-555-0102", CountryCode: 1},
		}},
		{ID: "PCAT003", Name: "Cat Cole", Email: "cat@example.org", TimeZone: "Europe/Berlin", ContactMethods: []ContactMethod{
			{Type: "sms_contact_method", Label: "Mobile", Address: "15123456789", CountryCode: 49},
		}},
		{ID: "PDAN004", Name: "Dan Díaz", Email: "dan@example.org", ContactMethods: []ContactMethod{
			{Type: "phone_contact_method", Label: "Desk", Address: "2079460958", CountryCode: 44},
			{Type: "sms_contact_method", Label: "Mobile", Address: "7700900123", CountryCode: 44},
		}},
	} {
		s.AddUser(u)
	}
	ny, _ := time.LoadLocation("America/New_York")
	berlin, _ := time.LoadLocation("Europe/Berlin")
	var office []Restriction
	for d := 1; d <= 5; d++ {
		office = append(office, Restriction{Type: "weekly_restriction", StartTimeOfDay: "09:00:00", StartDayOfWeek: d, Duration: 8 * time.Hour})
	}
	s.AddSchedule(Schedule{ID: "PSCHOPS", Name: "Ops", TimeZone: "America/New_York",
		Layers: []Layer{
			{ID: "PLAYER1", Name: "Weekly", Start: time.Date(2026, 9, 7, 9, 0, 0, 0, ny), RotationVirtualStart: time.Date(2026, 9, 7, 9, 0, 0, 0, ny),
				TurnLength: 7 * 24 * time.Hour, Users: []string{"PANN001", "PBEN002"}},
			{ID: "PLAYER2", Name: "Office hours", Start: time.Date(2026, 9, 7, 0, 0, 0, 0, ny), RotationVirtualStart: time.Date(2026, 9, 7, 9, 0, 0, 0, ny),
				TurnLength: 24 * time.Hour, Users: []string{"PCAT003", "PDAN004"}, Restrictions: office},
		},
		Overrides: []ScheduleOverride{{ID: "POVR001", User: "PBEN002", Start: time.Date(2026, 11, 3, 20, 0, 0, 0, ny), End: time.Date(2026, 11, 4, 8, 0, 0, 0, ny)}},
	})
	s.AddSchedule(Schedule{ID: "PSCHDB1", Name: "Database", TimeZone: "Europe/Berlin",
		Layers: []Layer{
			{ID: "PLAYER3", Name: "Daily", Start: time.Date(2026, 10, 1, 8, 0, 0, 0, berlin), RotationVirtualStart: time.Date(2026, 10, 1, 8, 0, 0, 0, berlin),
				TurnLength: 24 * time.Hour, Users: []string{"PDAN004", "PANN001", "PCAT003"}},
		},
	})
	s.AddSchedule(Schedule{ID: "PSCHWKD", Name: "Weekend", TimeZone: "Europe/Berlin",
		Layers: []Layer{
			{ID: "PLAYER4", Name: "Weekends", Start: time.Date(2026, 10, 3, 0, 0, 0, 0, berlin), RotationVirtualStart: time.Date(2026, 10, 3, 0, 0, 0, 0, berlin),
				TurnLength: 7 * 24 * time.Hour, Users: []string{"PBEN002", "PCAT003"},
				Restrictions: []Restriction{{Type: "weekly_restriction", StartTimeOfDay: "00:00:00", StartDayOfWeek: 6, Duration: 48 * time.Hour}}},
		},
	})
	s.AddEscalationPolicy(EscalationPolicy{ID: "PEPOPS1", Name: "Ops", NumLoops: 2, Rules: []EscalationRule{
		{DelayMinutes: 15, Targets: []Target{{"schedule_reference", "PSCHOPS"}}},
		{DelayMinutes: 10, Targets: []Target{{"user_reference", "PANN001"}}},
	}})
	s.AddEscalationPolicy(EscalationPolicy{ID: "PEPDB01", Name: "Database", Rules: []EscalationRule{
		{DelayMinutes: 30, Targets: []Target{{"schedule_reference", "PSCHDB1"}, {"user_reference", "PBEN002"}}, RoundRobin: true},
	}})
	for _, svc := range []struct{ name, ep string }{{"Checkout API", "PEPOPS1"}, {"Payments", "PEPOPS1"}, {"Postgres", "PEPDB01"}} {
		id, _ := s.AddService(svc.name)
		s.SetServiceEscalationPolicy(id, svc.ep)
	}
}
