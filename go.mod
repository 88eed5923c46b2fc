module github.com/rampart-proxy/rampart

go 1.26.8

require (
	github.com/gaissmai/bart v0.30.0
	github.com/hashicorp/golang-lru/v2 v2.0.7
	go.etcd.io/bbolt v1.5.0
	go.yaml.in/yaml/v3 v3.0.6
)

require golang.org/x/sys v0.45.0 // indirect
