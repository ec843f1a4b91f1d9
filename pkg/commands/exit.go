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
	DiffChanges   = 1 // no error class has code 1
)

const diffExitHelp = `
idopipe diff, a drift check for CI, exits 0 when nothing would change, 1 when
something would be created, updated, recreated or pruned (the pull Secret
included), and otherwise with the failure's code above.
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

// exitCode is the process exit code for err.
func exitCode(err error) int {
	var s *status
	if errors.As(err, &s) {
		return s.code
	}
	return fail.Code(err)
}

// diffStatus is diff's outcome for a dry run that found changes changes
// and ended with err: err, else nil for none and a status for differences.
func diffStatus(changes int, err error) error {
	if err != nil {
		return err
	}
	if changes > 0 {
		return &status{code: DiffChanges, msg: fmt.Sprintf("%d changes", changes)}
	}
	return nil
}
