package ratelimit

import (
	"testing"
	"time"
)

func TestAdaptiveFakeClock(t *testing.T) {
	b := NewBucket(Rate{RPS: 100, Burst: 200}, 0)
	var trans []string
	a := NewAdaptive(b, Rate{RPS: 100, Burst: 200}, AdaptiveSettings{Multiplier: 3, Trigger: 5 * time.Second,
		Recovery: 10 * time.Second, MinRate: 10, UnderAttack: Rate{RPS: 10, Burst: 10}},
		func(from, to string, _ AdaptiveStatus) { trans = append(trans, from+">"+to) })
	now := time.Unix(1000, 0)
	tick := func(reqs int) {
		for range reqs {
			a.Hit()
		}
		now = now.Add(time.Second)
		a.Tick(now)
	}
	a.Tick(now)
	for range 30 {
		tick(100) // normal: 100/s
	}
	if st := a.Status(); st.State != StateNormal || st.NormalRate < 99 || st.NormalRate > 101 {
		t.Fatalf("learned %+v", st)
	}
	for range 4 {
		tick(1000) // 10x for 4s: not yet
	}
	if a.Status().State != StateNormal {
		t.Fatal("attack declared before trigger_duration")
	}
	tick(1000)
	if st := a.Status(); st.State != StateUnderAttack || b.Rate().Burst != 10 || b.Rate().RPS > 10.01 {
		t.Fatalf("after 5s at 10x: %+v, bucket %+v", st, b.Rate())
	}
	if a.Status().NormalRate > 101 {
		t.Fatal("the attack was learned as normal")
	}
	for range 5 {
		tick(100)
	}
	if a.Status().State != StateRecovering {
		t.Fatalf("after 5 calm seconds: %s", a.Status().State)
	}
	tick(100)
	if r := b.Rate(); r.RPS <= 10.01 || r.RPS >= 100 {
		t.Fatalf("recovering: rate %+v, want between the limits", r)
	}
	for range 10 {
		tick(100)
	}
	if st := a.Status(); st.State != StateNormal || b.Rate().Burst != 200 {
		t.Fatalf("after recovery: %+v %+v", st, b.Rate())
	}
	want := []string{"normal>under_attack", "under_attack>recovering", "recovering>normal"}
	if len(trans) != 3 || trans[0] != want[0] || trans[1] != want[1] || trans[2] != want[2] {
		t.Fatalf("transitions %v, want %v", trans, want)
	}
}
