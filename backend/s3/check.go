package s3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// ErrUnsafeStore is wrapped by New's error when the store accepted a
// conditional write it had to reject: on such a store two candidates could
// both lead.
var ErrUnsafeStore = errors.New("the store does not enforce conditional writes (If-None-Match / If-Match on PutObject)")

// checkConditionalWrites proves, on a probe object of its own beside the lock
// object, that the store enforces exactly the preconditions Create and
// Update rely on:
//
//  1. PutObject with If-None-Match: * of a new key succeeds;
//  2. the same again is refused, as a lost race (the object exists now);
//  3. PutObject with If-Match of a different ETag is refused, as a lost race;
//  4. PutObject with If-Match of the ETag step 1 returned succeeds (so the
//     ETags the store returns are the ones it compares).
//
// The probe is then deleted. Each candidate's probe has a random name, so
// candidates starting together do not disturb each other's check. Five
// requests, once per New.
func (l *Lock) checkConditionalWrites(ctx context.Context) error {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	key := l.key + ".probe-" + hex.EncodeToString(rnd[:])
	where := fmt.Sprintf("%s: start-up check against %s (probe object s3://%s/%s)", l.desc, l.endpoint, l.bucket, key)
	put := func(in *awss3.PutObjectInput) (string, error) {
		in.Bucket, in.Key = &l.bucket, &key
		in.Body = strings.NewReader(`{"probe":"` + hex.EncodeToString(rnd[:]) + `"}`)
		out, err := l.client.PutObject(ctx, in, singleAttempt)
		if err != nil {
			return "", err
		}
		return aws.ToString(out.ETag), nil
	}

	etag, err := put(&awss3.PutObjectInput{IfNoneMatch: aws.String("*")})
	if err != nil {
		return fmt.Errorf("%s: conditional create (If-None-Match: *) of a new object failed: %w", where, err)
	}
	if etag == "" {
		return fmt.Errorf("%s: the store returned no ETag for a write, so updates cannot be conditional: %w", where, ErrUnsafeStore)
	}
	defer func() {
		// Best effort, and bounded even if ctx has ended: the lock works
		// without the delete permission, at the price of one small object
		// per start.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = l.client.DeleteObject(dctx, &awss3.DeleteObjectInput{Bucket: &l.bucket, Key: &key}, singleAttempt)
	}()

	if _, err := put(&awss3.PutObjectInput{IfNoneMatch: aws.String("*")}); err == nil {
		return fmt.Errorf("%s: a second If-None-Match: * write of the same key succeeded; refusing to run, as two candidates could both create the lock: %w", where, ErrUnsafeStore)
	} else if !lostRace(err, false) {
		return fmt.Errorf("%s: a second If-None-Match: * write of the same key failed, but not with 412 Precondition Failed: %w", where, err)
	}

	wrong := `"` + strings.Repeat("0", 32) + `"`
	if strings.EqualFold(etag, wrong) {
		wrong = `"` + strings.Repeat("1", 32) + `"`
	}
	if _, err := put(&awss3.PutObjectInput{IfMatch: aws.String(wrong)}); err == nil {
		return fmt.Errorf("%s: a write with If-Match: %s succeeded although the object's ETag is %s; refusing to run, as a stale candidate could overwrite the leader: %w", where, wrong, etag, ErrUnsafeStore)
	} else if !lostRace(err, true) {
		return fmt.Errorf("%s: a write with a non-matching If-Match failed, but not with 412 Precondition Failed: %w", where, err)
	}

	if _, err := put(&awss3.PutObjectInput{IfMatch: aws.String(etag)}); err != nil {
		return fmt.Errorf("%s: a write with If-Match of the ETag the store returned (%s) failed, so no update could succeed: %w", where, etag, err)
	}
	return nil
}
