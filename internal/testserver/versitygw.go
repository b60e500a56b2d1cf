package testserver

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3 is a versitygw S3 server on 127.0.0.1 with a posix backend in a
// temporary directory, for a test.
type S3 struct {
	// Addr is host:port; Endpoint the same as an http:// URL.
	Addr, Endpoint string
	// AccessKey and SecretKey are the root user's static credentials.
	AccessKey, SecretKey string
	// Region is the region the server signs for.
	Region string

	bin, root string
	mu        sync.Mutex
	stop      func() // stops the running process
}

// StartS3 starts versitygw (built by hack/deps/20-versitygw.sh) on a free
// port and stops it when t ends. Buckets are made with CreateBucket.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	s := &S3{AccessKey: "leaderelection", SecretKey: "leaderelection-secret", Region: "us-east-1", bin: LookBinary(t, "versitygw")}
	s.root = filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(s.root, 0o755); err != nil {
		t.Fatal(err)
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
		s.Endpoint = "http://" + s.Addr
		// Another process may take the port between FreePort and the bind.
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.stop()
	})
	return s
}

// Restart kills versitygw (SIGKILL, as a crash) and starts it again on the
// same port and directory, returning once it listens: buckets and objects
// survive, connections do not.
func (s *S3) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = s.start(); err == nil {
			return
		}
	}
	t.Fatalf("restarting versitygw: %v", err)
}

// start starts versitygw on s.Addr and sets s.stop.
func (s *S3) start() error {
	var log bytes.Buffer
	cmd := exec.Command(s.bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--region", s.Region,
		"--port", s.Addr, "--quiet", "posix", s.root)
	cmd.Stdout, cmd.Stderr = &log, &log
	// Its own process group, so that stopping it cannot reach the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting versitygw: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.stop = func() {
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
	if err := waitListening(s.Addr, exited, 15*time.Second); err != nil {
		s.stop()
		return fmt.Errorf("versitygw did not start: %w\n%s", err, log.String())
	}
	return nil
}

// waitListening waits until versitygw itself answers on addr: an HTTP
// request gets its Server header. A bare dial would also succeed against
// another process that took the port between FreePort and the bind (this
// versitygw then exits, and the caller tries another port).
func waitListening(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-exited:
			return fmt.Errorf("versitygw exited")
		default:
		}
		if resp, err := client.Get("http://" + addr + "/"); err == nil {
			server := resp.Header.Get("Server")
			resp.Body.Close()
			if server == "VERSITYGW" {
				return nil
			}
			return fmt.Errorf("%s is served by another process (Server: %q)", addr, server)
		}
		select {
		case <-exited:
			return fmt.Errorf("versitygw exited")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing answers on %s after %v", addr, timeout)
		}
	}
}

// Client returns an S3 client for the server at endpoint (the server's own,
// or a Proxy's "http://" + Addr), with the root user's credentials and
// path-style addressing; optFns adjust it (an HTTPClient that counts, say).
func (s *S3) Client(endpoint string, optFns ...func(*awss3.Options)) *awss3.Client {
	return S3Client(endpoint, s.Region, s.AccessKey, s.SecretKey, optFns...)
}

// S3Client returns a path-style S3 client for any S3 endpoint with static
// credentials.
func S3Client(endpoint, region, accessKey, secretKey string, optFns ...func(*awss3.Options)) *awss3.Client {
	return awss3.New(awss3.Options{
		Region:                     region,
		BaseEndpoint:               aws.String(endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}, optFns...)
}

// CreateBucket creates a bucket on the server.
func (s *S3) CreateBucket(t testing.TB, bucket string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := s.Client(s.Endpoint).CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatalf("creating bucket %s: %v", bucket, err)
	}
}
