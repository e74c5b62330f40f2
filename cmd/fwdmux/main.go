// Command fwdmux forwards logs from Fluentd-protocol clients and tailed files to
// Fluentd / Fluent Bit aggregators. See README.md for the quick start.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
)

var version = "dev"

func main() {
	os.Exit(realMain(os.Args[1:]))
}

func realMain(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "version", "-version", "--version":
			fmt.Println("fwdmux", version)
			return 0
		}
	}
	err := runMain(context.Background(), args)
	if err == nil {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(os.Stderr, "fwdmux:", ue.msg)
		return 2
	}
	fmt.Fprintln(os.Stderr, "fwdmux:", err)
	return 1
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }
