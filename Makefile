# make test: the one command that runs every test (see scripts/test.sh).
.PHONY: test dev build
test:
	scripts/test.sh

dev:
	go run ./cmd/mssante dev

build:
	go build -o bin/mssante ./cmd/mssante
