//go:build !linux

package filestore

import (
	"errors"
	"syscall"
)

const defaultSync = syncFile

var syscallENOTDIR = syscall.ENOTDIR

func syncfs(string) error { return errors.New("syncfs is Linux-only") }
