module github.com/eachhook/eachhook/bench

go 1.26

require (
	github.com/eachhook/eachhook v0.0.0
	github.com/google/go-github/v89 v89.0.0
	github.com/standard-webhooks/standard-webhooks/libraries v0.0.1
	github.com/stretchr/testify v1.12.1
	github.com/stripe/stripe-go/v82 v82.5.1
	github.com/svix/svix-webhooks v1.44.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/google/go-querystring v1.2.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	gopkg.in/validator.v2 v2.0.1 // indirect
)

replace github.com/eachhook/eachhook => ../
