//go:build !unix

package audit

import "os"

// lockFile is a no-op where flock(2) does not exist; Rampart is built and
// tested for Linux.
func lockFile(*os.File) error { return nil }
