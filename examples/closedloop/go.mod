module github.com/eachhook/eachhook/examples/closedloop

go 1.26.0

replace (
	github.com/eachhook/eachhook => ../..
	github.com/eachhook/eachhook/eachloop => ../../eachloop
)

require (
	github.com/eachhook/eachhook v0.0.0
	github.com/eachhook/eachhook/eachloop v0.0.0
	github.com/stretchr/testify v1.12.1
	go.uber.org/goleak v1.3.0
)

require go.yaml.in/yaml/v3 v3.0.5 // indirect
