package proxy

import (
	"strconv"
	"testing"
)

// BenchmarkSelect measures one selection over a pool of 8 backends, all
// available and idle, with no tried backends: the common request path.
// The consistent_hash key is an IPv4 address, as with hash_key: client_ip.
func BenchmarkSelect(b *testing.B) {
	for _, alg := range allAlgorithms {
		s := mustSelector(b, alg, benchBackends())
		b.Run(alg, func(b *testing.B) {
			b.ReportAllocs()
			key := "198.51.100.23"
			for b.Loop() {
				if s.Select(key, nil) == nil {
					b.Fatal("nil")
				}
			}
		})
		b.Run(alg+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				key := "198.51.100.23"
				for pb.Next() {
					if s.Select(key, nil) == nil {
						b.Error("nil")
						return
					}
				}
			})
		})
	}
}

func benchBackends() []*Backend {
	bs := make([]*Backend, 8)
	for i := range bs {
		bs[i] = NewBackend("backend-"+strconv.Itoa(i), "10.0.1."+strconv.Itoa(i+1)+":8080", 1+i%3)
	}
	return bs
}
