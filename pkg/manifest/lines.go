package manifest

import (
	"bufio"
	"os"
	"strings"
)

// DocumentLine returns the 1-based line on which document doc (1-based, as
// in Object.Source "file#doc") of a YAML file starts, for annotations that
// point at it; 1 when the file cannot be read.
func DocumentLine(path string, doc int) int {
	f, err := os.Open(path)
	if err != nil {
		return 1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), MaxSize)
	line, seen := 0, 1
	for sc.Scan() {
		line++
		if seen == doc {
			return line
		}
		if strings.HasPrefix(sc.Text(), "---") {
			seen++
		}
	}
	return 1
}
