package k8s_test

import (
	"context"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// leaseRole is the least privilege the lock needs: get, create and update
// its Lease, and list and watch it (the watch wakes followers).
func leaseRole(ns string) *rbacv1.Role {
	return &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "leader-election", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"coordination.k8s.io"},
			Resources: []string{"leases"},
			Verbs:     []string{"get", "create", "update", "list", "watch"},
		}},
	}
}

func (s *server) grant(t *testing.T, ns string, subject rbacv1.Subject) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.admin.RbacV1().Roles(ns).Create(ctx, leaseRole(ns), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "leader-election-", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "leader-election"},
		Subjects:   []rbacv1.Subject{subject},
	}
	if _, err := s.admin.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The authorizer learns of the binding through its own watch, a moment
	// later: wait until it allows every verb of the Role (a missing verb
	// still fails, after the wait).
	user := subject.Name
	if subject.Kind == rbacv1.ServiceAccountKind {
		user = "system:serviceaccount:" + subject.Namespace + ":" + subject.Name
	}
	deadline := time.Now().Add(wait)
	for _, verb := range leaseRole(ns).Rules[0].Verbs {
		for {
			review, err := s.admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:               user,
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: "coordination.k8s.io", Resource: "leases"},
			}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if review.Status.Allowed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s may still not %s leases in %s %v after the binding: %s", user, verb, ns, wait, review.Status.Reason)
			}
			time.Sleep(20 * time.Millisecond) // polling the authorizer's cache
		}
	}
}

// exercise runs a whole term through cfg: create, renew, watch another
// writer, take over, release.
func exercise(t *testing.T, s *server, cfg *rest.Config, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	name := locktest.Name(t)
	l := newLock(t, cfg, ns, name, "restricted")
	other := newLock(t, s.kube.Config(), ns, name, "other")
	if err := l.Create(ctx, locktest.NewRecord("restricted", 1)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := l.Update(ctx, locktest.NewRecord("restricted", 1)); err != nil {
		t.Fatalf("renew: %v", err)
	}
	changes := l.Changes(ctx)
	if _, _, err := other.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if err := other.Update(ctx, locktest.NewRecord("", 1)); err != nil {
		t.Fatal(err)
	}
	for {
		waitSignal(t, changes, "a release by another writer")
		rec, _, err := l.Get(ctx)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if rec.HolderIdentity == "" {
			break
		}
	}
	if err := l.Update(ctx, locktest.NewRecord("restricted", 2)); err != nil {
		t.Fatalf("take-over: %v", err)
	}
}

// A token user granted only get/create/update/list/watch on leases in its
// namespace can run the lock.
func TestRBACLeaseVerbsSuffice(t *testing.T) {
	s := sharedServer(t)
	ns := s.namespace(t)
	s.grant(t, ns, rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: "rbac.authorization.k8s.io", Name: testserver.KubeUserAlice})
	exercise(t, s, s.kube.UserConfig(testserver.KubeUserAlice), ns)
}

// So can a service account with the same Role, authenticating with a token
// from the TokenRequest API, as a pod would.
func TestRBACServiceAccountSuffices(t *testing.T) {
	s := sharedServer(t)
	ns := s.namespace(t)
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "elector", Namespace: ns}}
	if _, err := s.admin.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.grant(t, ns, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "elector", Namespace: ns})
	tok, err := s.admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "elector", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest: %v", err)
	}
	exercise(t, s, s.kube.TokenConfig(tok.Status.Token), ns)
}

// Without those permissions every call fails with a Forbidden error that
// names the Lease and the missing verb.
func TestRBACWithoutLeaseVerbsIsClearError(t *testing.T) {
	s := sharedServer(t)
	ns := s.namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	name := locktest.Name(t)
	l := newLock(t, s.kube.UserConfig(testserver.KubeUserBob), ns, name, "bob")
	_, _, err := l.Get(ctx)
	if !apierrors.IsForbidden(err) {
		t.Fatalf("Get without permission returned %v, want Forbidden", err)
	}
	for _, want := range []string{ns + "/" + name, `cannot get resource "leases"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	err = l.Create(ctx, locktest.NewRecord("bob", 1))
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `cannot create resource "leases"`) {
		t.Errorf("Create without permission returned %v, want Forbidden naming create", err)
	}
}
