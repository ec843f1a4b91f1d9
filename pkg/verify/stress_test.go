package verify

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/idopipe/idopipe/internal/testenv"
	"github.com/idopipe/idopipe/pkg/fail"
	"github.com/idopipe/idopipe/pkg/publish"
)

// TestStressSharedLayer: for 2 seconds (IDOPIPE_STRESS_SECONDS=N for a
// longer diagnostic run), rounds of a fresh random layer
// of the planner layer's size pushed by 4 pushers at once (publish.Push,
// the first ones racing their uploads' commits of one digest, the later
// ones mounting from an earlier repository) while 3 readers pull the
// latest images fully (WithFull; as the default PAT and anonymously, the
// packages being public). Not one read may be corrupt. It ruled out the
// registry, its token front and idopipe's client as the cause of the e2e
// suite's "layer read back with its size but another digest": that was
// the suite itself corrupting a layer every test shares (see
// testenv.Registry.CorruptImage).
func TestStressSharedLayer(t *testing.T) {
	testenv.NeedStack(t)
	seconds, _ := strconv.Atoi(os.Getenv("IDOPIPE_STRESS_SECONDS"))
	if seconds <= 0 {
		seconds = 2
	}
	r := startRegistry(t)
	ctx := context.Background()
	a := accessAs(r, r.Password)
	anon := a
	anon.Creds = nil
	const pushers, readers, perPusher = 4, 3, 3
	var corrupt, failed, pulls, pushes atomic.Int64
	var mu sync.Mutex
	var pushed []name.Digest
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	for round := 0; time.Now().Before(deadline); round++ {
		dir := filepath.Join(t.TempDir(), "oci")
		d, err := testenv.RandomLayout(dir, 2479402, 1)
		if err != nil {
			t.Fatal(err)
		}
		var pw, rw sync.WaitGroup
		stop := make(chan struct{})
		for i := range pushers {
			pw.Go(func() {
				for j := range perPusher {
					owner := fmt.Sprintf("stress%d-%d-%d", round, i, j)
					tag, err := name.NewTag(r.Host + "/" + owner + "/planner:1")
					if err != nil {
						t.Error(err)
						return
					}
					var opts []publish.Option
					mu.Lock()
					if j > 0 && len(pushed) > 0 {
						opts = append(opts, publish.WithMountFrom(pushed[len(pushed)-1].Context()))
					}
					mu.Unlock()
					ref, err := publish.Push(ctx, dir, d, tag, a, opts...)
					if err != nil {
						t.Errorf("push %s: %v", tag, err)
						return
					}
					pushes.Add(1)
					r.SetPublic(owner+"/planner", true)
					mu.Lock()
					pushed = append(pushed, ref)
					mu.Unlock()
				}
			})
		}
		for i := range readers {
			rw.Go(func() {
				for k := 0; ; k++ {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					n := len(pushed)
					var ref name.Digest
					if n > 0 {
						ref = pushed[n-1-(k+i)%min(n, 4)]
					}
					mu.Unlock()
					if n == 0 {
						time.Sleep(10 * time.Millisecond)
						continue
					}
					acc := a
					if k%2 == 1 {
						acc = anon
					}
					_, err := Pull(ctx, ref, ref.DigestStr(), acc, WithFull())
					pulls.Add(1)
					switch {
					case err == nil:
					case fail.ClassOf(err) == fail.Corrupt:
						corrupt.Add(1)
						t.Errorf("pull %s: %v", ref, err)
					default:
						failed.Add(1)
						t.Errorf("pull %s: %v", ref, err)
					}
				}
			})
		}
		pw.Wait()
		close(stop)
		rw.Wait()
	}
	t.Logf("%d pushes, %d full pulls: %d corrupt, %d failed otherwise", pushes.Load(), pulls.Load(), corrupt.Load(), failed.Load())
	if pushes.Load() == 0 || pulls.Load() == 0 {
		t.Errorf("%d pushes and %d full pulls: nothing was stressed", pushes.Load(), pulls.Load())
	}
}
