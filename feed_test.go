package consensus

import "testing"

func TestFeedDropsForSlowSubscriberOnly(t *testing.T) {
	var f Feed[int]
	slow := f.Subscribe(2)
	fast := f.Subscribe(10)
	for i := range 5 {
		f.Publish(i)
	}
	if got := slow.Dropped(); got != 3 {
		t.Fatalf("slow subscriber dropped %d, want 3", got)
	}
	if got := fast.Dropped(); got != 0 {
		t.Fatalf("fast subscriber dropped %d, want 0", got)
	}
	if f.Dropped() != 3 {
		t.Fatalf("feed dropped %d, want 3", f.Dropped())
	}
	for want := range 2 {
		if v := <-slow.C(); v != want {
			t.Fatalf("slow got %d, want %d", v, want)
		}
	}
	slow.Close()
	slow.Close()
	if _, ok := <-slow.C(); ok {
		t.Fatal("closed subscription still delivers")
	}
	f.Publish(9) // must not panic on the closed subscription
	if f.Subscribers() != 1 {
		t.Fatalf("subscribers = %d, want 1", f.Subscribers())
	}
	fast.Close()
}
