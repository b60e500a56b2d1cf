package testserver

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Clientset returns a clientset for cfg (one of a Kube's configs), failing
// tb if it cannot be made.
func Clientset(tb testing.TB, cfg *rest.Config) kubernetes.Interface {
	tb.Helper()
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		tb.Fatalf("clientset: %v", err)
	}
	return c
}

// CreateNamespace creates namespace name through client and returns name,
// failing tb if it cannot. Nothing deletes it: no controller-manager runs
// to finalize namespaces.
func CreateNamespace(tb testing.TB, client kubernetes.Interface, name string) string {
	tb.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		tb.Fatalf("creating namespace %s: %v", name, err)
	}
	return name
}
