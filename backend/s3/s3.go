// Package s3 is a leader-election lock stored as one object in an S3 bucket
// (Amazon S3 or any store that implements conditional writes: versitygw,
// MinIO, Ceph RGW, Cloudflare R2, ...).
//
// Every write is a compare-and-swap on the object's ETag: Create is a
// PutObject with If-None-Match: *, Update (renewal, take-over and release
// alike) a PutObject with If-Match: <the ETag last read or written>. The store
// refuses a write whose precondition no longer holds (HTTP 412, or 409
// ConditionalRequestConflict while another conditional write is in flight, or
// 404 when the object went away); those are lost races, for which
// [lock.IsConflict] is true. Because a store that ignores these headers would
// let two candidates both lead, [New] first checks that the store rejects a
// conditional write it must reject, and refuses to run if it does not.
//
// Every request is made once: the SDK's retryer is replaced for this lock's
// calls. A write whose response is lost may have succeeded, and an automatic
// retry would then fail its precondition against its own write and report a
// lost race; the elector's loop retries on its own schedule instead, reading
// first. This also means no call outlives its context by waiting out a
// backoff.
//
// Followers cannot watch an S3 object, so the elector reads it every retry
// period. Options.ReleaseCheckInterval lets a follower skip most of those
// reads while the lease it saw is live; see there and docs/backends/s3.md.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/b3df926d/leaderelection/lock"
)

// Lock is one candidate's handle on a lock object. It implements
// [lock.Interface]; its methods are safe for concurrent use.
type Lock struct {
	client       *awss3.Client
	bucket, key  string
	identity     string
	desc         string // s3://bucket/key, in every error
	endpoint     string // where the store is, for the start-up check's errors
	releaseCheck time.Duration

	// markerKey is the object that shows a record was once written (see
	// markWritten): Key + ".written". It outlives the record's deletion.
	markerKey string

	mu     sync.Mutex
	etag   string // the version last read or written; "" before the first
	gen    uint64 // the generation in that version
	unsure []byte // body of the last write that got no answer; nil: none
	cache  *cachedRead
	// marked: this handle has seen the marker or made sure of it; from
	// then on it never reports the lock new.
	marked bool
	// readNever: this handle's last Get found that no record was ever
	// written. Its Create then succeeds only if that is still so.
	readNever bool
}

var _ lock.Interface = (*Lock)(nil)

// cachedRead is a record held by another candidate, with a live lease, that
// Get serves without reading S3 (see Options.ReleaseCheckInterval).
type cachedRead struct {
	rec     lock.Record
	raw     []byte
	etag    string
	expires time.Time // from here the observed lease could have expired
	recheck time.Time // from here Get reads again, to notice a release
}

// New returns a lock on s3://Bucket/Key for Identity. Unless
// Options.SkipConditionalWriteCheck is set, it first proves that the store
// enforces conditional writes, writing and deleting a probe object next to
// the lock object (Key + ".probe-" + random suffix), and returns an error
// naming the endpoint if it does not. New does not read or write the lock
// object itself.
func New(ctx context.Context, opts Options) (*Lock, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.Identity == "" {
		opts.Identity = lock.DefaultIdentity()
	}
	client := opts.Client
	if client == nil {
		var err error
		if client, err = newClient(ctx, opts); err != nil {
			return nil, fmt.Errorf("s3://%s/%s: %w", opts.Bucket, opts.Key, err)
		}
	}
	l := &Lock{
		client:       client,
		bucket:       opts.Bucket,
		key:          opts.Key,
		identity:     opts.Identity,
		markerKey:    opts.Key + ".written",
		desc:         "s3://" + opts.Bucket + "/" + opts.Key,
		endpoint:     endpointOf(client),
		releaseCheck: opts.ReleaseCheckInterval,
	}
	if !opts.SkipConditionalWriteCheck {
		if err := l.checkConditionalWrites(ctx); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// newClient builds a client from opts.Config or the standard AWS chain.
func newClient(ctx context.Context, opts Options) (*awss3.Client, error) {
	var cfg aws.Config
	if opts.Config != nil {
		cfg = opts.Config.Copy()
	} else {
		var err error
		if cfg, err = config.LoadDefaultConfig(ctx); err != nil {
			return nil, fmt.Errorf("loading AWS configuration: %w", err)
		}
	}
	if opts.Region != "" {
		cfg.Region = opts.Region
	}
	if cfg.Region == "" && opts.Endpoint != "" {
		cfg.Region = "us-east-1"
	}
	return awss3.NewFromConfig(cfg, func(o *awss3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.UsePathStyle
		// The body is a few hundred bytes sent once per renewal: checksums
		// beyond what S3 requires buy nothing, and their aws-chunked
		// encoding is what S3-compatible stores most often get wrong.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

func endpointOf(c *awss3.Client) string {
	o := c.Options()
	if o.BaseEndpoint != nil && *o.BaseEndpoint != "" {
		return *o.BaseEndpoint
	}
	return "AWS S3 (region " + o.Region + ")"
}

// singleAttempt is applied to every request: see the package documentation.
func singleAttempt(o *awss3.Options) {
	o.Retryer = aws.NopRetryer{}
	o.RetryMaxAttempts = 0
}

// Get reads the record and remembers its version (the ETag) for Update. It
// may serve a follower's read from cache; see Options.ReleaseCheckInterval.
func (l *Lock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: get: %w", l.desc, err)
	}
	start := time.Now()
	l.mu.Lock()
	if c := l.cache; c != nil && start.Before(c.recheck) && start.Before(c.expires) {
		rec, raw := c.rec, c.raw
		l.mu.Unlock()
		return &rec, bytes.Clone(raw), nil
	}
	l.mu.Unlock()

	obj, raw, etag, err := l.read(ctx)
	if lock.IsNotFound(err) {
		err = l.notFound(ctx)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.readNever = errors.Is(err, lock.ErrNeverWritten)
	if err != nil {
		// A failed read keeps the version last seen (an Update from it is
		// still a compare-and-swap) but nothing may be served from cache.
		l.cache = nil
		return nil, nil, err
	}
	l.etag, l.gen = etag, obj.Generation
	l.cache = l.cacheFor(obj.Record, raw, etag, start)
	return obj.Record, raw, nil
}

// read fetches and decodes the lock object.
func (l *Lock) read(ctx context.Context) (*object, []byte, string, error) {
	out, err := l.client.GetObject(ctx, &awss3.GetObjectInput{Bucket: &l.bucket, Key: &l.key}, singleAttempt)
	if err != nil {
		if status(err) == http.StatusNotFound && errorCode(err) != "NoSuchBucket" {
			return nil, nil, "", lock.NewNotFound(l.desc)
		}
		return nil, nil, "", l.wrap("get", err)
	}
	defer out.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(out.Body, maxObjectSize+1))
	if err != nil {
		return nil, nil, "", l.wrap("get: reading body", err)
	}
	if len(raw) > maxObjectSize {
		return nil, nil, "", lock.NewCorrupt(l.desc, errTooLarge)
	}
	obj, err := decodeObject(raw)
	if err != nil {
		return nil, nil, "", lock.NewCorrupt(l.desc, err)
	}
	etag := aws.ToString(out.ETag)
	if etag == "" {
		return nil, nil, "", fmt.Errorf("%s: get: the store returned no ETag, so no update could be conditional", l.desc)
	}
	return obj, raw, etag, nil
}

// cacheFor returns what Get may serve for rec, read at start, or nil. A
// re-read of the same version keeps the expiry of the first read that saw
// it: the lease runs from when this candidate first observed it.
func (l *Lock) cacheFor(rec *lock.Record, raw []byte, etag string, start time.Time) *cachedRead {
	lease := time.Duration(rec.LeaseDurationSeconds) * time.Second
	if l.releaseCheck < 0 || rec.HolderIdentity == "" || rec.HolderIdentity == l.identity || lease <= 0 {
		return nil
	}
	expires := start.Add(lease)
	if prev := l.cache; prev != nil && prev.etag == etag {
		expires = prev.expires
	}
	if !start.Before(expires) {
		return nil
	}
	interval := l.releaseCheck
	if interval == 0 {
		interval = lease / 3
	}
	return &cachedRead{rec: *rec, raw: bytes.Clone(raw), etag: etag, expires: expires, recheck: start.Add(interval)}
}

// notFound is the error for a missing lock object: lock.ErrNeverWritten
// when the marker object shows that no record was ever written, plain
// not-found otherwise, and also when the marker cannot be read.
func (l *Lock) notFound(ctx context.Context) error {
	l.mu.Lock()
	marked := l.marked
	l.mu.Unlock()
	if marked {
		return lock.NewNotFound(l.desc)
	}
	_, err := l.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &l.bucket, Key: &l.markerKey}, singleAttempt)
	switch {
	case err == nil:
		l.mu.Lock()
		l.marked = true
		l.mu.Unlock()
	case status(err) == http.StatusNotFound:
		return lock.NewNeverWritten(l.desc)
	}
	return lock.NewNotFound(l.desc)
}

// writtenMarker is the content of the marker object.
const writtenMarker = "A record of this lock has been written. While this object exists, a candidate that finds the record missing waits out a lease (it may have been deleted under a working leader); without it, the first candidate leads at once. Delete it only with the record, and only to reset the lock with no candidate running.\n"

// markWritten makes sure the marker object exists before the record is
// written (PutObject with If-None-Match: *): a record that is then deleted
// is a deletion, after which candidates wait out a lease, while a lock
// whose marker was never made provably never had a record, and its first
// candidate leads at once. A Create after a Get that found no record ever
// written (readNever) must create the marker itself: if it exists by now,
// a record was written meanwhile (and perhaps deleted again), and the
// Create is a conflict. Checked until this handle has seen or made the
// marker once, so that records written before markers existed get one.
func (l *Lock) markWritten(ctx context.Context, op string, create bool) error {
	l.mu.Lock()
	marked, never := l.marked, l.readNever && create
	l.mu.Unlock()
	if marked {
		return nil
	}
	body := []byte(writtenMarker)
	_, err := l.client.PutObject(ctx, &awss3.PutObjectInput{
		Bucket: &l.bucket, Key: &l.markerKey, IfNoneMatch: aws.String("*"),
		Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))), ContentType: aws.String("text/plain"),
	}, singleAttempt)
	// 412: it exists. 409 (another conditional write of it in flight) is
	// a lost race for a Create that must make it, and otherwise no proof
	// that it exists yet.
	exists := status(err) == http.StatusPreconditionFailed
	switch {
	case err == nil || exists:
	case never && lostRace(err, false):
		return lock.NewConflict(l.desc, err)
	default:
		return fmt.Errorf("%s: %s: creating the marker s3://%s/%s that a record was written: %w", l.desc, op, l.bucket, l.markerKey, err)
	}
	l.mu.Lock()
	l.marked = true
	l.mu.Unlock()
	if exists && never {
		return lock.NewConflict(l.desc, fmt.Errorf("a record was written (and deleted) since this handle found none had ever been: s3://%s/%s exists", l.bucket, l.markerKey))
	}
	return nil
}

// Create writes rec if no lock object exists (If-None-Match: *). If this
// handle's last Get found that no record was ever written
// (lock.ErrNeverWritten), Create succeeds only if that is still so (see
// markWritten).
func (l *Lock) Create(ctx context.Context, rec lock.Record) error {
	if err := l.markWritten(ctx, "create", true); err != nil {
		return err
	}
	return l.put(ctx, "create", rec, 1, &awss3.PutObjectInput{IfNoneMatch: aws.String("*")})
}

// Update writes rec if the object still holds the version this handle last
// read or wrote (If-Match: <ETag>). Releasing the lock is an Update too.
//
// A write that got no answer (a timeout, a cut connection) may still land,
// even after a later Get. So when Update loses its race while such a write is
// outstanding, it reads the object once: if the stored body is that write,
// byte for byte (each body carries a random nonce), the version is this
// handle's own and Update retries from it. Any other writer's change is a
// lost race as usual.
func (l *Lock) Update(ctx context.Context, rec lock.Record) error {
	l.mu.Lock()
	etag, gen, unsure := l.etag, l.gen, l.unsure
	l.mu.Unlock()
	if etag == "" {
		return fmt.Errorf("%s: update before get or create: no version to compare", l.desc)
	}
	if err := l.markWritten(ctx, "update", false); err != nil {
		return err
	}
	err := l.put(ctx, "update", rec, gen+1, &awss3.PutObjectInput{IfMatch: aws.String(etag)})
	if unsure == nil || !lock.IsConflict(err) {
		return err
	}
	obj, raw, etag, rerr := l.read(ctx)
	if rerr != nil || !bytes.Equal(raw, unsure) {
		return err
	}
	l.mu.Lock()
	l.etag, l.gen, l.unsure = etag, obj.Generation, nil
	l.mu.Unlock()
	return l.put(ctx, "update", rec, obj.Generation+1, &awss3.PutObjectInput{IfMatch: aws.String(etag)})
}

func (l *Lock) put(ctx context.Context, op string, rec lock.Record, gen uint64, in *awss3.PutObjectInput) error {
	body, err := encodeObject(gen, rec)
	if err != nil {
		return fmt.Errorf("%s: %s: encoding record: %w", l.desc, op, err)
	}
	in.Bucket, in.Key = &l.bucket, &l.key
	in.Body = bytes.NewReader(body)
	in.ContentLength = aws.Int64(int64(len(body)))
	in.ContentType = aws.String("application/json")
	out, err := l.client.PutObject(ctx, in, singleAttempt)
	if err != nil {
		if lostRace(err, in.IfMatch != nil) {
			// What this handle knew is stale: the next Get must read.
			l.mu.Lock()
			l.cache = nil
			l.mu.Unlock()
			return lock.NewConflict(l.desc, err)
		}
		if status(err) == 0 {
			l.mu.Lock()
			l.unsure = body
			l.mu.Unlock()
		}
		return l.wrap(op, err)
	}
	etag := aws.ToString(out.ETag)
	l.mu.Lock()
	l.etag, l.gen, l.unsure, l.cache, l.readNever = etag, gen, nil, nil, false
	l.mu.Unlock()
	if etag == "" {
		return fmt.Errorf("%s: %s: written, but the store returned no ETag, so the next update cannot be conditional", l.desc, op)
	}
	return nil
}

// lostRace reports whether a conditional PutObject failed because its
// precondition did not hold: 412 Precondition Failed; 409
// ConditionalRequestConflict (another conditional write to the key was in
// flight); or, for If-Match, 404 because the object is gone (but not because
// the bucket is).
func lostRace(err error, ifMatch bool) bool {
	switch status(err) {
	case http.StatusPreconditionFailed:
		return true
	case http.StatusConflict:
		return errorCode(err) == "ConditionalRequestConflict"
	case http.StatusNotFound:
		return ifMatch && errorCode(err) != "NoSuchBucket"
	}
	return false
}

// errorCode returns S3's error code ("NoSuchKey", "PreconditionFailed", ...)
// or "".
func errorCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

// status returns the HTTP status of a failed request, or 0 when no response
// arrived.
func status(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func (l *Lock) wrap(op string, err error) error {
	return fmt.Errorf("%s: %s: %w", l.desc, op, err)
}

// RecordEvent does nothing: S3 has no event sink.
func (l *Lock) RecordEvent(string) {}

// Identity returns the candidate identity.
func (l *Lock) Identity() string { return l.identity }

// Describe names the lock object, as s3://bucket/key.
func (l *Lock) Describe() string { return l.desc }
