# The README's commands. `make test` installs the Debian packages the tests
# use when they are missing (root or sudo), then vets and tests everything.
GO ?= go

.PHONY: build test deps vet bench run

build:
	$(GO) build -o bin/sluice ./cmd/sluice

deps:
	./.ci/deps

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

test: deps vet
	$(GO) test -race -shuffle=on -timeout 15m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./bench/

run:
	$(GO) run ./cmd/sluice serve --config config.toml.example
