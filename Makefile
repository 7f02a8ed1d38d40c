# lunet — build, run and test. On a fresh Debian machine `make run` and
# `make test` install what is missing (scripts/deps.sh) before anything else.

SHELL   := /bin/bash
CARGO   ?= cargo
LUAJIT  ?= luajit
BUSTED  ?= /usr/bin/busted
STRESS_WORKERS ?= 50
STRESS_OPS     ?= 100
export STRESS_WORKERS STRESS_OPS
## `make fuzz`: wall-clock seconds of fuzzing over both builds.
FUZZ_SECONDS   ?= 600

.PHONY: all deps deps-test db-up build build-debug run test test-cargo test-spec \
        test-examples test-rocks test-types test-workers stress fuzz fuzz-quick bench docs \
        rockspecs rocks clean

all: build

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

## Starts the MariaDB and PostgreSQL test servers (loopback) if they are down.
db-up: deps-test
	@scripts/db-up.sh

## build/release: optimised, no tracing.
build: deps
	$(CARGO) build --release --workspace
	@scripts/stage.sh release

## build/debug: unoptimised, with zero-cost tracing compiled in.
build-debug: deps
	$(CARGO) build --workspace --features lunet/trace
	@scripts/stage.sh debug

run: build
	build/release/lunet-run examples/01_http_json.lua

test: deps-test db-up build build-debug
	FUZZ_ALLOW_FAIL= $(MAKE) --no-print-directory test-cargo test-spec test-examples test-rocks test-types test-workers stress fuzz-quick
	@echo "make test: all suites passed"

test-cargo:
	$(CARGO) test --workspace --release

test-spec:
	LUNET_BUILD=build/release $(LUAJIT) $(BUSTED) --ignore-lua --output=utfTerminal spec
	LUNET_BUILD=build/debug $(LUAJIT) $(BUSTED) --ignore-lua --output=utfTerminal spec

test-examples:
	@scripts/test-examples.sh build/release

## lunet-run --workers against curl and wrk (reload under load, restarts, drain).
test-workers:
	@scripts/test-workers.sh build/release
	@scripts/test-workers.sh build/debug

## Installs every rockspec into a temporary luarocks tree and uses it.
test-rocks:
	@scripts/test-rocks.sh

## Type-checks examples/ and the README's programs against types/ (emmylua_check).
test-types: deps-test
	@scripts/check-types.sh

stress: build-debug
	@scripts/db-up.sh postgres
	timeout 600 build/debug/lunet-run scripts/stress.lua

## The seeded misuse fuzzer (scripts/fuzz.lua) on the release and debug
## builds: `make fuzz` for FUZZ_SECONDS, `make fuzz-quick` (part of `make
## test`) for about a minute. FUZZ_ALLOW_FAIL=1 reports failures without
## failing (local runs only; `make test` clears it).
fuzz: db-up build build-debug
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(LUAJIT) scripts/fuzz.lua

fuzz-quick: db-up build build-debug
	FUZZ_SECONDS=60 $(LUAJIT) scripts/fuzz.lua

bench: build
	build/release/lunet-run bench/core.lua
	build/release/lunet-run bench/fs.lua
	build/release/lunet-run bench/udp.lua
	bench/sync.sh
	$(CARGO) build --release -p lunet-sqlite3 --example sqlite3_floor
	LUNET_SQLITE3_FLOOR=target/release/examples/sqlite3_floor build/release/lunet-run bench/sqlite3.lua
	@scripts/db-up.sh mysql
	$(CARGO) build --release -p lunet-mysql --example mysql_floor
	LUNET_MYSQL_FLOOR=target/release/examples/mysql_floor build/release/lunet-run bench/mysql.lua
	@scripts/db-up.sh postgres
	$(CARGO) build --release -p lunet-postgres --example postgres_floor
	LUNET_POSTGRES_FLOOR=target/release/examples/postgres_floor build/release/lunet-run bench/postgres.lua
	build/release/lunet-run bench/dbpool.lua
	LUNET_SQLITE3_FLOOR=target/release/examples/sqlite3_floor bench/dbconc.sh
	@scripts/deps.sh bench
	bench/net.sh
	bench/mcp_sse.sh
	bench/tls.sh
	bench/compare.sh
	bench/workers.sh

## Regenerates the API reference from the annotations in types/.
docs:
	$(LUAJIT) scripts/gen-docs.lua types docs/API.md

## Writes the versioned rockspecs (rockspecs/<rock>-<version>-1.rockspec) from
## the scm-1 ones and the Cargo workspace's version.
rockspecs:
	$(LUAJIT) scripts/gen-rockspecs.lua

## Binary rocks for every rock into dist/, installable without Rust.
rocks: rockspecs
	@scripts/make-rocks.sh dist

clean:
	$(CARGO) clean
	rm -rf build .tmp dist
