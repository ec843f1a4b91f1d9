// Package report carries the pipeline's events to the user.
//
// Stages emit Events through a Reporter; Human renders them as a concise
// summary, JSON as one object per line. Both are given the same events, so
// `--output json` never says less than the terminal does.
package report
