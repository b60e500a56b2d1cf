package leaderelection

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/b3df926d/leaderelection/lock"
)

// newKubeLock is the lock used when Option.Lock is nil: client-go's
// LeaseLock on LeaseLockNamespace/LeaseLockName through KubeClient.
func newKubeLock(opt Option) (lock.Interface, error) {
	return &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: opt.LeaseLockNamespace, Name: opt.LeaseLockName},
		Client:     opt.KubeClient.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: opt.ID},
	}, nil
}
