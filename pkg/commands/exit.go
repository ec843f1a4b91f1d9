package commands

import (
	"errors"
	"fmt"

	"github.com/idopipe/idopipe/pkg/fail"
)

// Exit statuses of idopipe diff, a drift check for CI (the convention of
// kapp's --diff-exit-status and timoni): 0 nothing to change, 1 something
// to create, update, recreate or prune (the pull Secret included), above 1
// an error with its class's code.
const (
	DiffNoChanges = 0
	DiffChanges   = 1
	// DiffInternal is diff's code for an internal error (a bug), whose
	// class code elsewhere is 1: in diff 1 means differences.
	DiffInternal = 70
)

const diffExitHelp = `
idopipe diff, a drift check for CI, exits 0 when nothing would change, 1 when
something would be created, updated, recreated or pruned (the pull Secret
included), and otherwise with the failure's code above; there an internal
error exits 70, as 1 means differences.
`

// status is an exit status that is no error: diff's differences. The
// result was printed; Execute prints no error line for it.
type status struct {
	code int
	msg  string
}

func (s *status) Error() string { return s.msg }

func isStatus(err error) bool {
	var s *status
	return errors.As(err, &s)
}

// exitWith gives err another exit code than its class's (diff's internal
// errors), keeping the error and its class for errors.Is/As and -o json.
type exitWith struct {
	code int
	err  error
}

func (e *exitWith) Error() string { return e.err.Error() }
func (e *exitWith) Unwrap() error { return e.err }

// exitCode is the process exit code for err.
func exitCode(err error) int {
	var s *status
	if errors.As(err, &s) {
		return s.code
	}
	var e *exitWith
	if errors.As(err, &e) {
		return e.code
	}
	return fail.Code(err)
}

// diffStatus is diff's outcome for a dry run that found changes changes
// and ended with err: nil for none, a status for differences, and err
// (an internal one re-coded) otherwise.
func diffStatus(changes int, err error) error {
	if err != nil {
		if fail.Code(err) == DiffChanges {
			return &exitWith{code: DiffInternal, err: err}
		}
		return err
	}
	if changes > 0 {
		return &status{code: DiffChanges, msg: fmt.Sprintf("%d changes", changes)}
	}
	return nil
}
