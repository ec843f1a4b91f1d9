// Command planner stands in for the IDO planner in idopipe's tests: a static
// Go binary that takes the planner's flags and listens on its port.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
)

var version = "0.4.0-fixture"

func main() {
	config := flag.String("config", "/config/defaults.json", "planner configuration")
	_ = flag.Int("v", 0, "log verbosity")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("planner", version)
		return
	}
	if _, err := os.Stat(*config); err != nil {
		log.Printf("config %s: %v", *config, err)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "planner", version) })
	log.Fatal(http.ListenAndServe(":33333", nil))
}
