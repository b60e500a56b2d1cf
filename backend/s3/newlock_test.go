package s3_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/b3df926d/leaderelection/internal/benchtest"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// The first candidate on a brand-new S3 lock leads at once: no marker
// object (<key>.written) proves that no record was ever written. Deleting
// the object afterwards (aws s3 rm) is a deletion, not a new lock: the
// marker stays. Deleting the marker as well resets the lock to new.
func TestNewLockLeadsAtOnceADeletedObjectDoesNot(t *testing.T) {
	s := startVersityGW(t)
	h := &harness{s: s}
	name := locktest.Name(t)
	benchtest.NewLockLeadsAtOnceADeletedOneDoesNot(t, h, h, name, func() {
		if _, err := s.direct().DeleteObject(context.Background(), &awss3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key(name) + ".written")}); err != nil {
			t.Fatal(err)
		}
	})
}

// A record written before locks made markers (here straight into the
// bucket) gets one at its next write, so that deleting it afterwards is a
// deletion.
func TestRecordWithoutMarkerGetsOneAtTheNextWrite(t *testing.T) {
	s := startGoFakeS3(t, nil)
	h := &harness{s: s}
	name := locktest.Name(t)
	ctx := context.Background()
	old := h.NewLock(t, name, "old")
	if err := old.Create(ctx, locktest.NewRecord("old", 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.direct().DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key(name) + ".written")}); err != nil {
		t.Fatal(err)
	}
	locktest.UpdateThenDeleteIsNotNew(t, h, h, name)
}

// BenchmarkFirstLeaderOnNewLock measures the time from Run to the first
// OnStartedLeading on a brand-new S3 lock (versitygw on loopback), for
// this module's elector and client-go's, at 15s/10s/2s and 2s/1.5s/1s
// (ms/first-leader):
//
//	go test -run '^$' -bench FirstLeaderOnNewLock -benchtime 3x ./backend/s3
func BenchmarkFirstLeaderOnNewLock(b *testing.B) {
	s := startVersityGW(b)
	fresh := func(tb testing.TB, name, id string) lock.Interface { return newLock(tb, s.viaProxy(), name, id, nil) }
	benchtest.FirstLeader(b, fresh, fresh)
}
