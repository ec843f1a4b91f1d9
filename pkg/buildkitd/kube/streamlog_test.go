package kube

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"

	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/klog/v2"
)

// TestStreamContextDropsClientGoLogs: what client-go's exec stream copiers
// report through the stream context's logger (as "Copying stdin failed"
// when the builder's Pod is deleted mid-build) does not reach klog's
// output, which is stderr in idopipe; the same report through the default
// logger does, so the test can fail.
func TestStreamContextDropsClientGoLogs(t *testing.T) {
	var out bytes.Buffer
	flags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(flags)
	set := func(name, value string) {
		if err := flags.Set(name, value); err != nil {
			t.Fatal(err)
		}
	}
	set("logtostderr", "false")
	set("stderrthreshold", "FATAL") // errors only to out, not also to stderr
	klog.SetOutput(&out)
	t.Cleanup(func() {
		set("stderrthreshold", "ERROR")
		set("logtostderr", "true")
		klog.SetOutput(os.Stderr)
	})
	report := func(ctx context.Context) string {
		out.Reset()
		utilruntime.HandleErrorWithLogger(klog.FromContext(ctx), errors.New("io: read/write on closed pipe"), "Copying stdin failed")
		klog.Flush()
		return out.String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	if got := report(ctx); !strings.Contains(got, "Copying stdin failed") {
		t.Fatalf("the control: the default logger wrote %q", got)
	}
	sctx := streamContext(ctx)
	cancel()
	if sctx.Err() != nil {
		t.Errorf("the stream's context ended with the dial's: %v", sctx.Err())
	}
	if got := report(sctx); got != "" {
		t.Errorf("the stream's logger wrote %q", got)
	}
}
