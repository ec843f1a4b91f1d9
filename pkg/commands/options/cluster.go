package options

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/idopipe/idopipe/pkg/fail"
)

// ClusterOptions are what a release or deploy writes to the cluster and how:
// manifests, CRDs, the pull Secret, pinning, conflicts, Pod recreation, dry
// run, the wait and the release lock.
type ClusterOptions struct {
	Manifests []string
	CRDs      []string
	PullSecretOptions
	Pin        bool
	Force      bool
	NoRecreate bool
	DryRun     bool
	Timeout    time.Duration
	LockWait   time.Duration

	LockHolder string // who holds the release lock: user, host, pid, Actions run (Complete)
}

// ClusterFlags say which of the optional cluster flags a command has.
type ClusterFlags struct {
	DryRun bool // --dry-run (diff always is one)
	// Writes: --no-recreate, --timeout and --lock-timeout, which only a run
	// that writes uses (diff takes no lock, recreates and waits for nothing).
	Writes bool
}

// AddFlags adds the cluster flags.
func (o *ClusterOptions) AddFlags(fs *pflag.FlagSet, with ClusterFlags) {
	fs.StringArrayVar(&o.Manifests, "manifest", []string{"deploy/manifest.yaml"}, "Kubernetes manifest to apply (repeatable)")
	fs.StringArrayVar(&o.CRDs, "crds", nil, "CustomResourceDefinitions to apply and wait for first (repeatable)")
	o.PullSecretOptions.AddFlags(fs)
	fs.BoolVar(&o.Pin, "pin", true, "reference the image by digest in the Pods")
	fs.BoolVar(&o.Force, "force-conflicts", false, "take over fields owned by another field manager")
	if with.DryRun {
		fs.BoolVar(&o.DryRun, "dry-run", false, "validate everything and show each object's change; build, push and write nothing")
	}
	if with.Writes {
		fs.BoolVar(&o.NoRecreate, "no-recreate", false, "refuse (instead of deleting and recreating) when a Pod's spec changes")
		fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long to wait for the Pods to become Ready")
		fs.DurationVar(&o.LockWait, "lock-timeout", 5*time.Minute, "how long to wait for another release into the namespace to finish")
	}
}

// AddWriteFlags adds the flags of a run that writes objects it does not
// read from files (rollback): --force-conflicts, --no-recreate, --timeout
// and --lock-timeout.
func (o *ClusterOptions) AddWriteFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Force, "force-conflicts", false, "take over fields owned by another field manager")
	fs.BoolVar(&o.NoRecreate, "no-recreate", false, "refuse (instead of deleting and recreating) when a Pod's spec changes")
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long to wait for the Pods to become Ready")
	fs.DurationVar(&o.LockWait, "lock-timeout", 5*time.Minute, "how long to wait for another release into the namespace to finish")
	o.Pin = true
}

// ValidateWrites refuses negative durations (AddWriteFlags' Validate).
func (o *ClusterOptions) ValidateWrites() error {
	if o.Timeout < 0 {
		return fail.New(fail.Usage, "pass --timeout 0 or more, e.g. 5m", "--timeout %s is negative", o.Timeout)
	}
	if o.LockWait < 0 {
		return fail.New(fail.Usage, "pass --lock-timeout 0 or more, e.g. 5m", "--lock-timeout %s is negative", o.LockWait)
	}
	return nil
}

// Complete names this run for the release lock: who ($USER), where, which
// process, and which GitHub Actions run ($GITHUB_RUN_ID).
func (o *ClusterOptions) Complete(getenv Getenv) {
	host, _ := os.Hostname()
	who := getenv.get("USER")
	if who == "" {
		who = "unknown"
	}
	o.LockHolder = fmt.Sprintf("%s@%s pid %d", who, host, os.Getpid())
	if run := getenv.get("GITHUB_RUN_ID"); run != "" {
		o.LockHolder += " (GitHub Actions run " + run + ")"
	}
}

// Validate refuses negative durations, no manifest and an empty or invalid
// Secret name.
func (o *ClusterOptions) Validate() error {
	if err := o.ValidateWrites(); err != nil {
		return err
	}
	if len(o.Manifests) == 0 {
		return fail.New(fail.Usage, "pass --manifest FILE", "no manifest to apply")
	}
	return o.PullSecretOptions.Validate()
}
