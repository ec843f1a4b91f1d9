package testenv

import (
	"context"
	"os"
	"sync"
	"testing"
)

// machine holds the machine's node and TSA locks for this package's tests
// that start a node or a timestamp authority, from the first of them until
// the package ends (TestMain): go test may run this package beside the
// end-to-end tests, whose stack would otherwise take the node between two
// host tests and keep it for minutes, and a host test's "after" state must
// not see another package's node.
var machine struct {
	once  sync.Once
	locks *MachineLocks
	err   error
}

// machineLocks waits for (once) and returns the package's machine locks:
// in a child this binary started with them (Pass), the inherited ones.
func machineLocks(t *testing.T) *MachineLocks {
	t.Helper()
	machine.once.Do(func() {
		if machine.locks, machine.err = InheritedMachineLocks(); machine.locks == nil && machine.err == nil {
			machine.locks, machine.err = HoldMachineLocks(context.Background())
		}
	})
	if machine.err != nil {
		t.Fatal(machine.err)
	}
	return machine.locks
}

func TestMain(m *testing.M) {
	code := m.Run()
	machine.locks.Release()
	os.Exit(code)
}
