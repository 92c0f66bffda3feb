# builds: self-hosted builds.sr.ht-compatible CI appliance.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# The VM and browser suites run when these are 1 (CI sets them; they then
# fail rather than skip if QEMU, mmdebstrap or Chromium are missing).
export BUILDS_VM_TESTS ?= 0
export BUILDS_BROWSER_TESTS ?= 0

.PHONY: build test lint bench run deps integration clean

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o builds .

# The store and API tests run on SQLite and, on a throw-away PostgreSQL
# server that .ci/with-postgres starts when the postgresql package is
# installed, on PostgreSQL too.
test:
	.ci/with-postgres go test -race -count=1 -timeout 35m ./...

integration:
	BUILDS_VM_TESTS=1 BUILDS_BROWSER_TESTS=1 .ci/with-postgres go test -count=1 -timeout 35m ./...

lint:
	go vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Benchmarks, including the VM ones (boot to SSH, submit to first byte,
# log throughput), which need QEMU and build the test image if needed.
bench:
	BUILDS_VM_TESTS=1 .ci/with-postgres go test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 60m ./...

run: build
	./builds serve

# deps installs the Debian packages builds needs on the host: QEMU for the
# runner, mmdebstrap & co. to build guest images (fdisk, dosfstools,
# mtools: the VM suite's test-made cloud images; ovmf: UEFI cloud images),
# Chromium for browser tests, PostgreSQL for the store's tests on it.
deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		qemu-system-x86 qemu-utils mmdebstrap e2fsprogs lz4 zstd binutils \
		tiny-initramfs-core openssh-client git mercurial ca-certificates chromium postgresql \
		fdisk ovmf dosfstools mtools

clean:
	rm -f builds
