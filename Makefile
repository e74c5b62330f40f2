SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -euc
.DEFAULT_GOAL := test

GO ?= go
BIN := bin/fwdmux
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 30s
PKG_FUZZ := ./wire ./tail

.PHONY: build test fuzz bench bench-micro generate tidy image run soak clean

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

# End to end: the real binary (GOMAXPROCS=1) against the bench sink, one row per
# scenario, JSON in bench-results/. QUICK=1 runs each scenario for a few seconds.
# Fails only when a scenario lost events, never on a time figure.
bench: build
	mkdir -p bench-results
	FWDMUX_BIN=$(CURDIR)/$(BIN) $(GO) run ./cmd/fwdbench $(if $(QUICK),-quick) -json bench-results/bench.json

# Micro benchmarks of the hot paths, one core.
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 ./wire ./proxy ./tail ./balance

# The no-loss suite at soak rates, round after round for SOAK_MINUTES (default 10),
# then per-case totals.
soak:
	GO=$(GO) bash internal/e2e/soak.sh

generate:
	$(GO) generate ./...
	git diff --exit-code

tidy:
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

PODMAN ?= podman
# These flags are what works on Debian's podman without a systemd session or cgroup
# delegation (CI, sandboxes); override PODMAN_FLAGS= on a regular workstation.
PODMAN_FLAGS ?= --storage-driver=vfs --cgroup-manager=cgroupfs --events-backend=file --runtime=runc

# FROM scratch has no shell: the root filesystem's few files are laid out here.
image: build
	rm -rf bin/rootfs
	install -d bin/rootfs/etc/ssl/certs bin/rootfs/var/lib/fwdmux
	printf 'root:x:0:0:root:/:/sbin/nologin\nfwdmux:x:65532:65532:fwdmux:/var/lib/fwdmux:/sbin/nologin\n' > bin/rootfs/etc/passwd
	printf 'root:x:0:\nfwdmux:x:65532:\n' > bin/rootfs/etc/group
	cp /etc/ssl/certs/ca-certificates.crt bin/rootfs/etc/ssl/certs/
	$(PODMAN) $(PODMAN_FLAGS) build --network=none --pull=never --format docker \
	  -t localhost/fwdmux:$(VERSION) -t localhost/fwdmux:latest .

run: build
	./$(BIN)

clean:
	rm -rf bin
