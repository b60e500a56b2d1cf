// Package deploy_test keeps the example's Kubernetes manifests valid: it
// applies them to a real kube-apiserver with server-side dry-run and strict
// field validation, and checks that the Role grants what the Lease lock
// needs.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

func TestMain(m *testing.M) { os.Exit(testserver.RunTests(m)) }

// manifests reads every object in this directory's YAML files.
func manifests(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests found: %v", err)
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := yaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(obj.Object) > 0 {
				objs = append(objs, obj)
			}
		}
	}
	return objs
}

// typed converts obj, one of the manifests, to its API type T.
func typed[T any](t *testing.T, obj *unstructured.Unstructured) *T {
	t.Helper()
	v := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, v); err != nil {
		t.Fatalf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
	}
	return v
}

type cluster struct {
	kube    *testserver.Kube
	client  kubernetes.Interface
	dynamic dynamic.Interface
	mapper  *restmapper.DeferredDiscoveryRESTMapper
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	kube := testserver.SharedKube(t)
	cfg := kube.Config()
	client := testserver.Clientset(t, cfg)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(client.Discovery()))
	return &cluster{kube: kube, client: client, dynamic: dyn, mapper: mapper}
}

func (c *cluster) namespace(t *testing.T) string {
	t.Helper()
	return testserver.CreateNamespace(t, c.client, "deploy-"+locktest.Name(t))
}

func (c *cluster) create(t *testing.T, ns string, obj *unstructured.Unstructured, opts metav1.CreateOptions) error {
	t.Helper()
	gvk := obj.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatalf("%s: %v", gvk, err)
	}
	_, err = c.dynamic.Resource(m.Resource).Namespace(ns).Create(context.Background(), obj.DeepCopy(), opts)
	return err
}

// Every manifest is accepted by the API server, with unknown or duplicate
// fields rejected (strict field validation), without creating anything.
func TestManifestsPassServerSideDryRun(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t)
	kinds := map[string]bool{}
	for _, obj := range manifests(t) {
		kinds[obj.GetKind()] = true
		err := c.create(t, ns, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
		if err != nil {
			t.Errorf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	for _, k := range []string{"Deployment", "ServiceAccount", "Role", "RoleBinding", "StatefulSet", "Service"} {
		if !kinds[k] {
			t.Errorf("no %s among the manifests", k)
		}
	}
}

// The Deployment runs three replicas as the service account, with the pod
// name as the candidate identity and probes on the health endpoints.
func TestDeploymentShape(t *testing.T) {
	for _, obj := range manifests(t) {
		if obj.GetKind() != "Deployment" {
			continue
		}
		d := typed[appsv1.Deployment](t, obj)
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
			t.Errorf("replicas = %v, want 3", d.Spec.Replicas)
		}
		if d.Spec.Template.Spec.ServiceAccountName != "leaderelection-example" {
			t.Errorf("serviceAccountName = %q", d.Spec.Template.Spec.ServiceAccountName)
		}
		ctr := d.Spec.Template.Spec.Containers[0]
		podName := false
		for _, e := range ctr.Env {
			if e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
				podName = true
			}
		}
		if !podName {
			t.Error("POD_NAME is not set from the downward API's metadata.name")
		}
		if p := ctr.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/livez" {
			t.Error("liveness probe is not an HTTP GET of /livez")
		}
		if p := ctr.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
			t.Error("readiness probe is not an HTTP GET of /readyz")
		}
		return
	}
	t.Fatal("no Deployment among the manifests")
}

// Every Deployment runs with recovery on, so that an API-server outage
// (an upgrade, an etcd compaction) does not restart its leader.
func TestDeploymentsRideOutAnAPIServerOutage(t *testing.T) {
	n := 0
	for _, obj := range manifests(t) {
		if obj.GetKind() != "Deployment" {
			continue
		}
		n++
		d := typed[appsv1.Deployment](t, obj)
		if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--leader-elect-recover") {
			t.Errorf("Deployment %s does not run with --leader-elect-recover: an API-server outage would restart its leader", d.Name)
		}
	}
	if n == 0 {
		t.Fatal("no Deployment among the manifests")
	}
}

// The active/passive manifest turns on leader-only readiness and puts a
// Service over the Deployment's pods, so its endpoints are the ready pods.
func TestActivePassiveServiceSelectsLeaderOnlyReadyPods(t *testing.T) {
	var d *appsv1.Deployment
	var svc *corev1.Service
	for _, obj := range manifests(t) {
		if obj.GetName() != "leaderelection-active-passive" {
			continue
		}
		switch obj.GetKind() {
		case "Deployment":
			d = typed[appsv1.Deployment](t, obj)
		case "Service":
			svc = typed[corev1.Service](t, obj)
		}
	}
	if d == nil || svc == nil {
		t.Fatal("active-passive.yaml lacks its Deployment or Service")
	}
	if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--leader-only-ready") {
		t.Error("the active/passive Deployment does not pass --leader-only-ready")
	}
	for k, v := range svc.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not match the pods' labels %v", k, v, d.Spec.Template.Labels)
		}
	}
}

// The gossip StatefulSet's voters are its own stable pod names for its
// replica count, its pods join through a headless Service that publishes
// them before they are ready (a recovering voter must be reachable), the
// readiness probe is /readyz (where /readyz/gossip fails while a voter
// recovers), the key comes from a Secret and the state from a volume.
func TestGossipStatefulSetShape(t *testing.T) {
	var sts *appsv1.StatefulSet
	services := map[string]*corev1.Service{}
	for _, obj := range manifests(t) {
		switch obj.GetKind() {
		case "StatefulSet":
			sts = typed[appsv1.StatefulSet](t, obj)
		case "Service":
			svc := typed[corev1.Service](t, obj)
			services[svc.Name] = svc
		}
	}
	if sts == nil {
		t.Fatal("no StatefulSet among the manifests")
	}
	pod := sts.Spec.Template.Spec
	ctr := pod.Containers[0]
	flags := map[string]string{}
	for _, a := range ctr.Args {
		k, v, _ := strings.Cut(a, "=")
		flags[k] = v
	}
	if flags["--backend"] != "gossip" {
		t.Errorf("--backend = %q, want gossip", flags["--backend"])
	}

	replicas := int32(1)
	if sts.Spec.Replicas != nil {
		replicas = *sts.Spec.Replicas
	}
	var want []string
	for i := range replicas {
		want = append(want, fmt.Sprintf("%s-%d", sts.Name, i))
	}
	if got := strings.Split(flags["--gossip-voters"], ","); !slices.Equal(got, want) {
		t.Errorf("--gossip-voters = %v; the StatefulSet's %d stable pod names are %v", got, replicas, want)
	}
	if replicas%2 == 0 {
		t.Errorf("replicas = %d: the voters must be an odd number", replicas)
	}
	podName := false
	for _, e := range ctr.Env {
		if e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
			podName = true
		}
	}
	if !podName || flags["--id"] != "" {
		t.Error("the identity is not the pod name (POD_NAME from metadata.name, no --id)")
	}

	svc := services[sts.Spec.ServiceName]
	switch {
	case svc == nil:
		t.Errorf("serviceName %q is not a Service among the manifests", sts.Spec.ServiceName)
	default:
		if svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("Service %s is not headless (clusterIP %q)", svc.Name, svc.Spec.ClusterIP)
		}
		if !svc.Spec.PublishNotReadyAddresses {
			t.Errorf("Service %s does not publish not-ready pods: a recovering voter could not be joined", svc.Name)
		}
		for k, v := range svc.Spec.Selector {
			if sts.Spec.Template.Labels[k] != v {
				t.Errorf("Service selector %s=%s does not match the pods' labels %v", k, v, sts.Spec.Template.Labels)
			}
		}
		if join := flags["--gossip-join"]; !strings.HasPrefix(join, svc.Name+".") {
			t.Errorf("--gossip-join = %q does not name the headless Service %s", join, svc.Name)
		}
		_, port, _ := strings.Cut(flags["--gossip-bind"], ":")
		protocols := map[corev1.Protocol]bool{}
		for _, p := range svc.Spec.Ports {
			if fmt.Sprint(p.Port) == port {
				protocols[p.Protocol] = true
			}
		}
		if !protocols[corev1.ProtocolTCP] || !protocols[corev1.ProtocolUDP] {
			t.Errorf("Service %s does not expose the gossip port %s on TCP and UDP: %v", svc.Name, port, svc.Spec.Ports)
		}
	}

	if p := ctr.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		t.Error("readiness probe is not an HTTP GET of /readyz")
	}
	if p := ctr.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/livez" {
		t.Error("liveness probe is not an HTTP GET of /livez")
	}

	// The key: a file on a volume from a Secret.
	mountOf := func(path string) (corev1.VolumeMount, bool) {
		for _, m := range ctr.VolumeMounts {
			if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
				return m, true
			}
		}
		return corev1.VolumeMount{}, false
	}
	keyFile := flags["--gossip-key-file"]
	if m, ok := mountOf(keyFile); !ok {
		t.Errorf("--gossip-key-file %q is on no volume mount", keyFile)
	} else {
		secret := false
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName != "" {
				secret = true
			}
		}
		if !secret {
			t.Errorf("--gossip-key-file %q is on volume %q, which is not a Secret", keyFile, m.Name)
		}
	}
	// The state: a volume per pod, kept across restarts.
	stateDir := flags["--gossip-state-dir"]
	if m, ok := mountOf(stateDir); !ok {
		t.Errorf("--gossip-state-dir %q is on no volume mount", stateDir)
	} else if !slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(c corev1.PersistentVolumeClaim) bool { return c.Name == m.Name }) {
		t.Errorf("--gossip-state-dir %q is on volume %q, which is no volumeClaimTemplate", stateDir, m.Name)
	}
}

// With the ServiceAccount, Role and RoleBinding applied for real, the
// service account can run the Lease lock: create, renew, watch, and record
// events. So the Role is enough; its test in backend/k8s shows that less is
// refused.
func TestRoleGrantsWhatTheLockNeeds(t *testing.T) {
	c := newCluster(t)
	ns := c.namespace(t)
	for _, obj := range manifests(t) {
		if obj.GetKind() == "Deployment" {
			continue
		}
		if err := c.create(t, ns, obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	cfg := c.kube.Config()
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":leaderelection-example"}
	client := testserver.Clientset(t, cfg)
	l, err := k8s.New(context.Background(), k8s.Options{Client: client, Namespace: ns, Name: "leaderelection-example", Identity: "pod-0"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := l.Create(ctx, locktest.NewRecord("pod-0", 1)); err != nil {
		t.Fatalf("Create as the service account: %v", err)
	}
	if err := l.Update(ctx, locktest.NewRecord("pod-0", 1)); err != nil {
		t.Fatalf("renew as the service account: %v", err)
	}
	changes := l.Changes(ctx)
	admin, err := k8s.New(context.Background(), k8s.Options{Client: c.client, Namespace: ns, Name: "leaderelection-example", Identity: "admin", DisableEvents: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := admin.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if err := admin.Update(ctx, locktest.NewRecord("", 1)); err != nil {
		t.Fatal(err)
	}
	for released := false; !released; {
		select {
		case <-changes:
		case <-ctx.Done():
			t.Fatal("the service account's watch (list + watch) never saw another writer's release")
		}
		rec, _, err := l.Get(ctx)
		if err != nil {
			t.Fatalf("Get as the service account: %v", err)
		}
		released = rec.HolderIdentity == ""
	}
	// Events go through an asynchronous broadcaster; check the permission
	// directly, as the broadcaster would use it.
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: "leaderelection-example-", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: "Lease", Namespace: ns, Name: "leaderelection-example"},
		Reason:         "LeaderElection", Message: "pod-0 became leader", Type: corev1.EventTypeNormal,
	}
	if _, err := client.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating an Event as the service account: %v", err)
	}
}
