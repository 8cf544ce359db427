package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/nodebatch/nodebatch/shared/progress"
)

// Progress display modes (--progress).
const (
	ProgressAuto  = "auto"  // a bar when stderr is a terminal, else plain lines
	ProgressBar   = "bar"   // always the live bar
	ProgressPlain = "plain" // always plain lines
)

// reporter shows a batch's progress while the CLI waits on it. Its methods
// are safe for concurrent use: the watcher updates it while the Ctrl-C
// handling prints the cancel's answer.
type reporter interface {
	// update shows a non-final message.
	update(m progress.Message)
	// final shows the final message and ends the display; what is printed
	// after it starts on a line of its own.
	final(m progress.Message)
	// println prints a line of its own without breaking the display.
	println(s string)
}

// newReporter picks the display: the bar on a terminal (or when asked),
// plain lines otherwise.
func newReporter(mode string, terminal bool, w io.Writer, every time.Duration, now func() time.Time) reporter {
	if mode == ProgressBar || (mode != ProgressPlain && terminal) {
		return &barReporter{w: w, now: now}
	}
	return &plainReporter{w: w, every: every, now: now}
}

// plainReporter prints one progressLine at most every interval: for pipes
// and CI logs, where a redrawn bar is noise.
type plainReporter struct {
	mu       sync.Mutex
	w        io.Writer
	every    time.Duration
	now      func() time.Time
	lastLine time.Time
}

func (p *plainReporter) update(m progress.Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if !p.lastLine.IsZero() && now.Sub(p.lastLine) < p.every {
		return
	}
	p.lastLine = now
	fmt.Fprintln(p.w, progressLine(m))
}

func (p *plainReporter) final(progress.Message) {}

func (p *plainReporter) println(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w, s)
}

// barReporter draws a live bar on one terminal line with
// github.com/schollz/progressbar/v3 (it owns the drawing: percent, the
// bar, done/total, clearing and redrawing the line, the width of the
// terminal). Rate and ETA are the relay's (progress.Message), not the
// bar's own estimate: they cover the whole batch, also when the wait
// starts mid-batch (watch) or after a reconnect.
type barReporter struct {
	mu    sync.Mutex
	w     io.Writer
	now   func() time.Time
	bar   *progressbar.ProgressBar // nil until a message with a total
	total int
	drawn time.Time // of the last update drawn
	ended bool
}

// barRedraw is the shortest time between two redraws of the bar: the relay
// may send many messages a second, a person reads a few.
const barRedraw = 100 * time.Millisecond

// barWidth is the bar's width in cells; progressbar narrows it when the
// line would not fit the terminal.
const barWidth = 40

// descWidth is what barDescription is padded to, so the line keeps its
// length (and the bar its width) as the numbers change.
const descWidth = 48

func (b *barReporter) update(m progress.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if b.bar != nil && m.Total == b.total && now.Sub(b.drawn) < barRedraw {
		return
	}
	b.drawn = now
	b.draw(m)
}

func (b *barReporter) final(m progress.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return
	}
	b.draw(m)
	if b.bar != nil {
		fmt.Fprintln(b.w)
	}
	b.ended = true
}

func (b *barReporter) println(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar == nil || b.ended {
		fmt.Fprintln(b.w, s)
		return
	}
	_ = b.bar.Clear()
	fmt.Fprintln(b.w, s)
	_ = b.bar.RenderBlank()
}

// draw updates the bar to m; b.mu is held.
func (b *barReporter) draw(m progress.Message) {
	if b.ended || m.Total <= 0 {
		return
	}
	if b.bar == nil || m.Total != b.total {
		if b.bar != nil { // a retry's attempt has another total: a new bar
			_ = b.bar.Clear()
		}
		if b.bar == nil {
			fmt.Fprintf(b.w, "batch/%s: %d nodes (Ctrl-C cancels the batch; twice detaches)\n", m.TaskID, m.Total)
		}
		b.total = m.Total
		b.bar = progressbar.NewOptions(m.Total,
			progressbar.OptionSetWriter(b.w),
			progressbar.OptionSetWidth(barWidth),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionSetDescription(barDescription(m)),
		)
	}
	if n := min(max(m.Current, 0), m.Total); n == m.Total {
		b.bar.Describe(barDescription(m)) // a finished bar draws only on Describe
		_ = b.bar.Set(n)
	} else {
		_ = b.bar.Set(n)
		b.bar.Describe(barDescription(m))
	}
}

// barDescription is what follows the bar: state, the relay's rate and
// ETA, failures so far and nodes in flight.
func barDescription(m progress.Message) string {
	var b strings.Builder
	b.WriteString(orDash(string(m.State)))
	if m.Rate > 0 {
		fmt.Fprintf(&b, ", %.1f nodes/s", m.Rate)
	}
	if m.ETASeconds > 0 {
		fmt.Fprintf(&b, ", eta %s", (time.Duration(m.ETASeconds * float64(time.Second))).Round(time.Second))
	}
	fmt.Fprintf(&b, ", %d failed, %d in flight", m.Counts.Failed, len(m.InFlight))
	return fmt.Sprintf("%-*s", descWidth, b.String())
}
