package backendflags

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/lock"
)

// kubeBackend: --backend=k8s, a Kubernetes Lease (backend/k8s) named by
// --leader-elect-resource-name in --leader-elect-resource-namespace
// (default: the pod's namespace from $POD_NAMESPACE).
func kubeBackend() *backend {
	var kubeconfig string
	return &backend{
		addFlags: func(fs *pflag.FlagSet) {
			fs.StringVar(&kubeconfig, "kubeconfig", "", "--backend=k8s: kubeconfig file (default: the in-cluster config, else $KUBECONFIG or ~/.kube/config).")
		},
		newLock: func(_ context.Context, _ string, opt *leaderelection.Option, _ string) (lock.Interface, error) {
			cfg, err := kubeConfig(kubeconfig)
			if err != nil {
				return nil, err
			}
			if opt.KubeClient, err = kubernetes.NewForConfig(cfg); err != nil {
				return nil, err
			}
			if ns := os.Getenv("POD_NAMESPACE"); ns != "" && opt.LeaseLockNamespace == "default" {
				opt.LeaseLockNamespace = ns
			}
			return nil, nil // a Lease through KubeClient, named by the caller
		},
	}
}

// kubeConfig loads --kubeconfig if set; else the in-cluster config; else the
// usual kubeconfig files.
func kubeConfig(path string) (*rest.Config, error) {
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err == nil {
			return cfg, nil
		}
		if !errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return cfg, nil
}
