//go:build !linux

package wafrx

import "time"

// threadCPU is not measured off Linux; the median CPU metric reads 0.
func threadCPU() time.Duration { return 0 }
