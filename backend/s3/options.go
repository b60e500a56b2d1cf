package s3

import (
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// Options configure a lock. Bucket and Key are required; the zero value of
// every other field is a sensible default.
type Options struct {
	// Bucket holds the lock object. It must exist.
	Bucket string
	// Key is the lock object's key, for example "leases/my-controller.json".
	// One object per lock: candidates for the same lock use the same key.
	Key string
	// Identity names this candidate in the record (client-go's "holder
	// identity"). It must be unique among the candidates; empty means
	// lock.DefaultIdentity() ($POD_NAME, else "<hostname>_<pid>").
	Identity string

	// Client, when set, is used as it is, and Config, Region, Endpoint and
	// UsePathStyle are ignored. Whatever its retryer, this lock makes every
	// request a single attempt (see the package documentation).
	Client *awss3.Client
	// Config is the AWS configuration to build a client from. Nil loads the
	// standard chain (environment, shared config and credentials files, web
	// identity, container and instance roles), as the AWS CLI does.
	Config *aws.Config
	// Region overrides the configured region. With a custom Endpoint and no
	// region configured anywhere, "us-east-1" is used, which MinIO, Ceph
	// and versitygw accept (Cloudflare R2 wants "auto").
	Region string
	// Endpoint is the base URL of an S3-compatible store (MinIO, Ceph RGW,
	// R2, versitygw, ...), for example "http://127.0.0.1:9000". Empty uses
	// AWS's own endpoint for the region.
	Endpoint string
	// UsePathStyle addresses the bucket in the path
	// (http://host/bucket/key) instead of the host name
	// (http://bucket.host/key). Most self-hosted stores need it.
	UsePathStyle bool

	// ReleaseCheckInterval trades S3 GET requests against how soon a
	// follower notices a graceful release. A follower whose Get saw a live
	// lease held by another candidate needs no read before that lease could
	// expire (the holder's renewals only change the version, which Update
	// checks anyway); within that window Get serves the cached record and
	// reads S3 again only once ReleaseCheckInterval has passed since the
	// last read, to notice an early release (or a new holder).
	//
	// Zero means a third of the observed lease duration (5s for client-go's
	// default 15s lease). A value at or above the lease duration reads only
	// when the lease could have expired; a negative value turns the cache
	// off, so that every Get reads S3. A cached Get still leaves the version
	// it read in place, so an Update based on it is a true compare-and-swap.
	ReleaseCheckInterval time.Duration

	// SkipConditionalWriteCheck skips New's check that the store rejects a
	// conditional write it must reject. Only for stores known to honour
	// If-None-Match and If-Match on PutObject, and whose credentials may not
	// write the probe object: on a store that ignores the preconditions two
	// candidates can both lead.
	SkipConditionalWriteCheck bool
}

// NoCache, as Options.ReleaseCheckInterval, makes every Get read S3.
const NoCache time.Duration = -1

func (o Options) validate() error {
	var errs []error
	if o.Bucket == "" {
		errs = append(errs, errors.New("s3: Options.Bucket is required"))
	}
	if o.Key == "" {
		errs = append(errs, errors.New("s3: Options.Key is required"))
	}
	return errors.Join(errs...)
}
