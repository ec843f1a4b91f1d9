// Command standin plays the images the local stack cannot pull from Docker
// Hub or registry.k8s.io: with -listen it serves each TCP address given
// (mongo:6's stand-in listens on :27017 and answers every connection with a
// line naming itself); without, it only waits (the Pods' sandbox image).
// It exits on SIGTERM or SIGINT, as PID 1 in a container must be told to.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	listen := flag.String("listen", "", "comma-separated TCP addresses to serve")
	name := flag.String("name", "standin", "what to answer")
	flag.Parse()
	for _, addr := range strings.Split(*listen, ",") {
		if addr == "" {
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("%s listening on %s", *name, addr)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "%s\n", *name)
				c.Close()
			}
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
