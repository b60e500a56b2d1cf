package backendflags

import (
	"context"
	"errors"

	"github.com/spf13/pflag"

	"github.com/b3df926d/leaderelection"
	s3lock "github.com/b3df926d/leaderelection/backend/s3"
	"github.com/b3df926d/leaderelection/lock"
)

// s3Backend: --backend=s3, one object in an S3 bucket (AWS, or an
// S3-compatible store with conditional writes via --s3-endpoint).
// Credentials come from the standard AWS chain (AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, AWS_PROFILE, instance and pod roles), never from
// flags.
func s3Backend(prog string) *backend {
	var o s3lock.Options
	return &backend{
		addFlags: func(fs *pflag.FlagSet) {
			fs.StringVar(&o.Bucket, "s3-bucket", "", "--backend=s3: the bucket holding the lock object (must exist).")
			fs.StringVar(&o.Key, "s3-key", "leaderelection/"+prog+".json", "--backend=s3: the lock object's key.")
			fs.StringVar(&o.Endpoint, "s3-endpoint", "", "--backend=s3: base URL of an S3-compatible store (MinIO, Ceph, R2, versitygw); empty for AWS.")
			fs.StringVar(&o.Region, "s3-region", "", "--backend=s3: region (default: from the AWS configuration; us-east-1 with --s3-endpoint).")
			fs.BoolVar(&o.UsePathStyle, "s3-path-style", false, "--backend=s3: path-style addressing (http://host/bucket/key), which most self-hosted stores need.")
			fs.DurationVar(&o.ReleaseCheckInterval, "s3-release-check-interval", 0, "--backend=s3: while a follower has seen a live lease, read S3 at most this often to notice a release early (0: a third of the lease; negative: read at every poll).")
		},
		newLock: func(ctx context.Context, id string, _ *leaderelection.Option, suffix string) (lock.Interface, error) {
			if o.Bucket == "" {
				return nil, errors.New("--s3-bucket is required")
			}
			o := o
			o.Identity = id
			if suffix != "" {
				// A companion is read once, by a holder of the lock,
				// and must see the last write; the lock itself has
				// checked the bucket's conditional writes.
				o.Key += suffix
				o.ReleaseCheckInterval, o.SkipConditionalWriteCheck = s3lock.NoCache, true
			}
			return s3lock.New(ctx, o)
		},
	}
}
