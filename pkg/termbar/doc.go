// Package termbar draws a push's progress in place on a terminal: a bar
// with the bytes pushed, the total and the rate, redrawn with carriage
// returns (github.com/schollz/progressbar). It implements publish.Bar, so
// pkg/publish keeps only the seam and stays testable without a terminal.
package termbar
