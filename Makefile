# make test: the one command that runs every test (see scripts/test.sh).
.PHONY: test dev build
test:
	scripts/test.sh

dev:
	go run ./cmd/mssante dev

# The documented build: static (no cgo), stamped with the VCS revision that mssante --version prints.
build:
	CGO_ENABLED=0 go build -trimpath -buildvcs=auto -o bin/mssante ./cmd/mssante
