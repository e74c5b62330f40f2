SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -euc
.DEFAULT_GOAL := test

GO ?= go
BIN := bin/fwdmux
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 30s
PKG_FUZZ := ./wire ./tail

.PHONY: build test fuzz bench generate tidy image run soak clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/fwdmux

test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

# Each fuzz target runs for FUZZTIME; the corpus lives in testdata/fuzz/.
fuzz:
	@for pkg in $(PKG_FUZZ); do \
	  for t in $$($(GO) test -list 'Fuzz.*' $$pkg | grep ^Fuzz); do \
	    echo "== $$pkg $$t"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# Micro benchmarks of the hot paths (one core), then the end-to-end harness.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 ./wire ./proxy ./tail ./balance

generate:
	$(GO) generate ./...
	git diff --exit-code

tidy:
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

image: build
	podman build -t fwdmux:$(VERSION) -t fwdmux:latest .

run: build
	./$(BIN)

clean:
	rm -rf bin
