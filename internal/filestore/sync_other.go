//go:build !linux

package filestore

import (
	"errors"
	"os"
	"syscall"
)

const defaultSync = syncFile

var syscallENOTDIR = syscall.ENOTDIR

func syncfs(string) error { return errors.New("syncfs is Linux-only") }

func fdatasync(f *os.File) error { return f.Sync() }
