package termbar

import (
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Bar is one push's progress bar.
type Bar struct {
	bar   *progressbar.ProgressBar
	total int64
}

// New starts a bar labelled label on the terminal w.
func New(w io.Writer, label string) *Bar {
	return &Bar{bar: progressbar.NewOptions64(1,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(label),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(), // bytes pushed of the total
		progressbar.OptionUseANSICodes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionClearOnFinish(),
	)}
}

// Set redraws the bar with complete bytes of total. go-containerregistry's
// total grows as the push reaches more blobs and can equal complete in
// between; the bar's maximum is kept one byte above complete so that the
// library does not take it for the end: Clear ends it.
func (b *Bar) Set(complete, total int64) {
	if total <= complete {
		total = complete + 1
	}
	if total != b.total {
		b.total = total
		b.bar.ChangeMax64(total)
	}
	_ = b.bar.Set64(complete)
}

// Clear removes the bar from the terminal.
func (b *Bar) Clear() {
	_ = b.bar.Clear()
	_ = b.bar.Exit()
}
