// Command builder builds container images from Dockerfiles, without a daemon.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/builderdev/builder/internal/cli"
	"github.com/builderdev/builder/worker/runc"
)

func main() {
	// The sandbox re-executes this binary as the container's init process.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		runc.Init()
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.New().ExecuteContext(ctx)
	stop()
	if err != nil {
		// builder run passes the exit code of what it ran on, silently.
		var ec *cli.ExitCodeError
		if errors.As(err, &ec) {
			os.Exit(ec.Code)
		}
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
