package webhooks

import (
	"testing"
	"time"
)

// TestSchedulerStopWaitsForLaunches: an entry begun by a commit's apply
// (on its goroutine, not the scheduler's) is launched after the lock is
// released. stop must not return before that launch: Run takes stop's
// return as "no attempt can start any more" and then closes the results
// channel an attempt would send on.
func TestSchedulerStopWaitsForLaunches(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	launched := make(chan dkey, 1)
	s := newScheduler(4, 4, func(e *entry) {
		close(entered)
		<-release // a goroutine preempted between the unlock and the launch
		launched <- e.key
	})
	k := makeKey(1, kindByteWebhook)
	go s.apply([]memOp{{key: k, due: time.Now().Add(-time.Second), host: "h"}}, nil)
	<-entered
	stopped := make(chan struct{})
	go func() { s.stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("stop returned while a begun attempt was still to be launched")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not return after the launch")
	}
	if got := <-launched; got != k {
		t.Fatalf("launched %v", got)
	}
	// Closed: a due entry applied now is not begun.
	s.apply([]memOp{{key: makeKey(2, kindByteWebhook), due: time.Now().Add(-time.Second), host: "h"}}, nil)
	select {
	case k := <-launched:
		t.Fatalf("launched %v after stop", k)
	default:
	}
}
