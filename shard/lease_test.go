//go:build unix

package shard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/b3df926d/leaderelection/backend/k8s"
	core "github.com/b3df926d/leaderelection/internal/shard"
	"github.com/b3df926d/leaderelection/internal/testserver"
)

// TestAssignmentRecordFitsALease: the assignment record, its JSON in the
// Lease's holderIdentity, is stored and read back whole by the real
// kube-apiserver for 1,000 shards over the most members (MaxSlots, each
// identity as long as a pod name may be, 253 characters), and for
// 100,000 shards: the API validates no length on holderIdentity, and
// the object stays far below etcd's 1.5 MiB request limit.
func TestAssignmentRecordFitsALease(t *testing.T) {
	kube := testserver.SharedKube(t)
	client := testserver.Clientset(t, kube.Config())
	var b [6]byte
	rand.Read(b[:])
	ns := testserver.CreateNamespace(t, client, "shard-"+hex.EncodeToString(b[:]))
	ctx := context.Background()
	for _, c := range []struct{ shards, members int }{{1000, 10}, {1000, MaxSlots}, {100_000, MaxSlots}} {
		name := fmt.Sprintf("s%d-m%d-shards", c.shards, c.members)
		t.Run(name, func(t *testing.T) {
			var members []core.Member
			for k := range c.members {
				id := fmt.Sprintf("replica-%02d-", k)
				members = append(members, core.Member{Slot: k, ID: id + strings.Repeat("x", 253-len(id))})
			}
			owners := make([]int, c.shards)
			for s := range owners {
				owners[s] = s % c.members
			}
			a := core.Assignment{Generation: 1 << 30, Members: members, Owners: owners}
			rec, err := assignmentRecord(a, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			open := func() *k8s.Lock {
				l, err := k8s.New(ctx, k8s.Options{Client: client, Namespace: ns, Name: name, Identity: "observer", DisableEvents: true})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(l.Close)
				return l
			}
			if err := open().Create(ctx, rec); err != nil {
				t.Fatalf("creating a Lease holding %d bytes: %v", len(rec.HolderIdentity), err)
			}
			back, _, err := open().Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeAssignment(back)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, a) {
				t.Fatalf("the assignment read back differs from the one written")
			}
			lease, err := client.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d shards, %d members of %d-character identities: holderIdentity %d bytes, Lease %d bytes",
				c.shards, c.members, len(members[0].ID), len(rec.HolderIdentity), lease.Size())
		})
	}
}
