# KPI Integrations: `make run` starts everything on this machine; `make test` runs
# the whole suite (installing and starting what it needs).

# Keep builds out of the work tree so fresh clones reuse one warm target dir.
CARGO_TARGET_DIR ?= $(HOME)/.cache/kpi-integrations/target
export CARGO_TARGET_DIR

PYTHON ?= python3
# apt-get needs root: sudo when not root already.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
NEXTEST_PROFILE ?= $(if $(CI),ci,default)

.PHONY: run test contract lint deps fmt check-deps-tree clean package bench

# The Lambda functions (every package under functions/ but the dev server).
FUNCTIONS := $(filter-out dev-server,$(notdir $(wildcard functions/*)))

## Start the all-in-one dev server on http://127.0.0.1:3000 (KPI_LISTEN overrides).
run:
	cargo run --release -p dev-server

## Everything the tests need, then the whole suite and the API contract test.
test: deps
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --workspace --profile $(NEXTEST_PROFILE); \
	else \
		echo "cargo-nextest not found: using cargo test"; \
		cargo test --workspace; \
	fi
	$(MAKE) --no-print-directory contract

## schemathesis against the running dev server: >= 1,000 requests, no 5xx, responses as specified.
contract: deps
	tests/contract/run.sh

## Formatting, clippy, the dependency-tree rule and the SAM template.
lint: deps
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(MAKE) --no-print-directory check-deps-tree
	cfn-lint template.yaml

## Python tools: moto (AWS emulator for tests), cfn-lint and schemathesis; Debian's
## Chromium and ChromeDriver and axe-core (from tests/ui's lock file) for the page tests.
deps:
	@$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	@if [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/chromium ]; then \
		echo "installing Debian chromium and chromium-driver for the page tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	fi
	@if [ ! -f tests/ui/node_modules/axe-core/axe.min.js ]; then \
		npm ci --prefix tests/ui --no-audit --no-fund --silent; \
	fi

## One HTTP stack and one TLS stack: no second hyper or rustls major version.
check-deps-tree:
	@dups=$$(cargo tree --workspace -d -e normal --prefix depth --format '{p}' 2>/dev/null \
		| grep -E '^0(hyper|rustls|h2|ring|aws-lc-rs) v' | sed 's/^0//' | sort -u); \
	if [ -n "$$dups" ]; then echo "duplicate HTTP/TLS crates:"; echo "$$dups"; exit 1; fi; \
	echo "dependency tree: one hyper, one rustls"

## Every Lambda built with cargo-lambda for arm64 (provided.al2023), as SAM deploys
## them; prints each zip's size. Installs cargo-lambda (with zig) and the target.
package:
	@command -v cargo-lambda >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check cargo-lambda
	@rustup target list --installed | grep -q '^aarch64-unknown-linux-gnu$$' || rustup target add aarch64-unknown-linux-gnu
	cargo lambda build --release --arm64 --output-format zip $(addprefix -p ,$(FUNCTIONS))
	@echo "function zips (budget 6 MB):"
	@for f in $(FUNCTIONS); do \
		zip="$(CARGO_TARGET_DIR)/lambda/$$f/bootstrap.zip"; \
		printf '  %-16s %9d bytes\n' "$$f" "$$(stat -c %s "$$zip")"; \
	done

## Measurements against their floors, written into docs/benchmarks.md (see there).
bench: deps
	cargo build --release $(addprefix -p ,$(FUNCTIONS)) -p dev-server -p kpi-bench
	$(CARGO_TARGET_DIR)/release/coldstart $(CARGO_TARGET_DIR)/release 7
	$(CARGO_TARGET_DIR)/release/api_latency $(CARGO_TARGET_DIR)/release/dev-server 5
	@# The workers log one metrics line per sync: kept out of the terminal.
	@mkdir -p $(CARGO_TARGET_DIR)/bench
	$(CARGO_TARGET_DIR)/release/sync 1000 32 > $(CARGO_TARGET_DIR)/bench/sync.log
	@tail -n 3 $(CARGO_TARGET_DIR)/bench/sync.log
	$(CARGO_TARGET_DIR)/release/fanout 10000 1000 > $(CARGO_TARGET_DIR)/bench/fanout.log
	@tail -n 3 $(CARGO_TARGET_DIR)/bench/fanout.log
	@command -v cargo-bloat >/dev/null 2>&1 || cargo install --locked cargo-bloat
	cargo bloat --profile bloat -p api --crates -n 20 --message-format json > $(CARGO_TARGET_DIR)/bench/bloat.json
	$(CARGO_TARGET_DIR)/release/report

fmt:
	cargo fmt --all

clean:
	rm -rf .kpi
