package fail

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Class is the kind of failure; each has its own exit code.
type Class int

// The failure classes, in the order of their exit codes. The values are the
// exit codes documented in the README and in `idopipe help exit-codes`.
const (
	Internal    Class = 70 // a bug or an unexpected library error (EX_SOFTWARE: 1 is no class, idopipe diff says "differences" with it)
	Usage       Class = 2  // bad flags or arguments
	Credentials Class = 3  // token or username missing, unreadable or rejected
	Manifest    Class = 4  // the Kubernetes manifest cannot be read or is invalid
	Build       Class = 5  // BuildKit unreachable, build context or Dockerfile missing, build failed
	Registry    Class = 6  // registry unreachable, push refused, TLS failure
	Verify      Class = 7  // the image resolves to another digest than expected
	Cluster     Class = 8  // API server unreachable, object rejected
	NotReady    Class = 9  // Pods did not become Ready, or a non-transient cause was found
	NotFound    Class = 10 // the image (tag, digest or manifest) is not in the registry
	Platform    Class = 11 // the image has no manifest for a platform the cluster runs
	Corrupt     Class = 12 // a blob is missing, or its size or sha256 is wrong
	Daemon      Class = 13 // BuildKit cannot be reached or started
	RateLimit   Class = 14 // the registry still rate-limits after the retries (429, GitHub's secondary rate limit)
	Unsigned    Class = 15 // the image's digest is not signed as the verification policy requires (a key, or a certificate identity)
	LockLost    Class = 16 // the release lost the namespace's release lock and stopped before its next write
	Sigstore    Class = 17 // Fulcio, the timestamp authority or Rekor unreachable or refusing
	Interrupted Class = 130
)

var names = map[Class]string{
	Internal: "internal", Usage: "usage", Credentials: "credentials", Manifest: "manifest",
	Build: "build", Registry: "registry", Verify: "digest-mismatch", Cluster: "cluster",
	NotReady: "not-ready", NotFound: "not-found", Platform: "platform-missing", Corrupt: "corrupt-blob", Daemon: "buildkit-unreachable",
	RateLimit:   "rate-limited",
	Unsigned:    "unsigned",
	LockLost:    "lock-lost",
	Sigstore:    "sigstore",
	Interrupted: "interrupted",
}

// Classes lists every class in exit-code order.
func Classes() []Class {
	return []Class{Usage, Credentials, Manifest, Build, Registry, Verify, Cluster, NotReady, NotFound, Platform, Corrupt, Daemon, RateLimit, Unsigned, LockLost, Sigstore, Internal, Interrupted}
}

func (c Class) String() string {
	if n, ok := names[c]; ok {
		return n
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Error is a classified error: a one-line message and the fix.
type Error struct {
	Class Class
	Msg   string // what went wrong, naming the object
	Fix   string // what to do about it; may be empty
	Err   error  // the underlying error, for errors.Is/As
}

func (e *Error) Error() string {
	msg := e.Msg
	if e.Fix != "" {
		msg += ": " + e.Fix
	}
	return OneLine(msg)
}

func (e *Error) Unwrap() error { return e.Err }

// New returns a classified error with a message and a fix.
func New(c Class, fix, format string, args ...any) *Error {
	return &Error{Class: c, Msg: fmt.Sprintf(format, args...), Fix: fix}
}

// Wrap classifies err; the message is msg followed by err's own text.
func Wrap(c Class, err error, fix, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if err != nil {
		msg += ": " + OneLine(err.Error())
	}
	return &Error{Class: c, Msg: msg, Fix: fix, Err: err}
}

// WithCause is New with err kept as the cause (for errors.Is/As) but left
// out of the message: for a message that already says what err means, in
// words of its own. A nil err gives what New gives.
func WithCause(c Class, err error, fix, format string, args ...any) *Error {
	e := New(c, fix, format, args...)
	e.Err = err
	return e
}

// FirstFailure picks, of the errors of tasks run together (errs in task
// order, nil for a task that succeeded) that cancel each other on the
// first failure, the one to report: the first that is not a cancellation
// (the failure that cancelled the others), else ctx's own error when ctx
// was cancelled, else the first cancellation (a task that returned
// context.Canceled by itself), else nil.
func FirstFailure(ctx context.Context, errs []error) error {
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// ClassOf returns the class of err: the outermost classified error wins, a
// cancelled context counts as an interrupt, anything else is Internal.
func ClassOf(err error) Class {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	if errors.Is(err, context.Canceled) {
		return Interrupted
	}
	return Internal
}

// Code is the process exit code for err (0 for nil).
func Code(err error) int { return int(ClassOf(err)) }

// OneLine folds a multi-line message into one line.
func OneLine(s string) string {
	s = strings.TrimSpace(s)
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(strings.NewReplacer("\r", " ", "\n", " ").Replace(s)), " ")
}
