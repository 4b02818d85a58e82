# KPI Integrations: `make run` starts everything on this machine; `make test` runs
# the whole suite (installing and starting what it needs); `make deploy` builds
# and deploys the stack (docs/deploy.md).

# The repository root, so the targets SAM calls work from any directory.
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

# Keep builds out of the work tree so fresh clones reuse one warm target dir.
CARGO_TARGET_DIR ?= $(HOME)/.cache/kpi-integrations/target
export CARGO_TARGET_DIR

PYTHON ?= python3
# apt-get needs root: sudo when not root already.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
NEXTEST_PROFILE ?= $(if $(CI),ci,default)

# The Python tools at the exact versions of infra/python-tools.txt, in two
# virtual environments outside the clone: checkov's requirements conflict with
# the SAM CLI's and moto's, so it has one of its own.
VENV_HOME ?= $(HOME)/.cache/kpi-integrations/venv
TOOLS_VENV := $(VENV_HOME)/tools
CHECKOV_VENV := $(VENV_HOME)/checkov
PINS := $(ROOT)/infra/python-tools.txt
PINNED := $(shell sed -e 's/\#.*//' $(PINS))
CHECKOV_PINS := $(filter checkov==%,$(PINNED))
TOOL_PINS := $(filter-out checkov==%,$(PINNED))
# moto_server and schemathesis for the tests, cargo-lambda for the builds,
# cfn-lint and sam for lint, build and deploy: the tools venv first on PATH.
export PATH := $(TOOLS_VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0
CHECKOV := $(CHECKOV_VENV)/bin/checkov

.PHONY: run test contract lint lint-template deps tools fmt check-deps-tree clean package \
	lambdas sam-build deploy bench

# The Lambda functions (every package under functions/ but the dev server).
FUNCTIONS := $(filter-out dev-server,$(notdir $(wildcard $(ROOT)/functions/*)))

# The one release build of every function: `make package` and SAM's
# `build-<LogicalId>` targets run exactly this command, so the second run finds
# everything built (same packages, same features) and compiles nothing.
LAMBDA_BUILD := cargo lambda build --release --arm64 --output-format zip $(addprefix -p ,$(FUNCTIONS))

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
lint: tools
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(MAKE) --no-print-directory check-deps-tree
	$(MAKE) --no-print-directory lint-template

## The SAM template: cfn-lint, `sam validate --lint` and checkov (0 failed checks;
## each skip is justified in the resource's Metadata.checkov).
lint-template: tools
	cfn-lint template.yaml
	@# sam validate needs a region, not credentials.
	AWS_DEFAULT_REGION=$${AWS_REGION:-$${AWS_DEFAULT_REGION:-us-east-1}} sam validate --lint
	$(CHECKOV) -f template.yaml --framework cloudformation --skip-download --compact --quiet

## The Python tools (tools and checkov venvs); Debian's Chromium and ChromeDriver
## and axe-core (tests/ui) for the page tests; oidc-provider (tests/oidc), the
## OpenID Provider the sign-in tests start.
deps: tools
	@if [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/chromium ]; then \
		echo "installing Debian chromium and chromium-driver for the page tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	fi
	@if [ ! -f tests/ui/node_modules/axe-core/axe.min.js ]; then \
		npm ci --prefix tests/ui --no-audit --no-fund --silent; \
	fi
	@if [ ! -f tests/oidc/node_modules/oidc-provider/package.json ]; then \
		npm ci --prefix tests/oidc --no-audit --no-fund --silent; \
	fi

## The pinned Python tools. Each venv keeps a copy of the pins it was installed
## with: pip runs only when the venv is missing or the pins changed.
tools:
	@$(call venv,$(TOOLS_VENV),$(TOOL_PINS))
	@$(call venv,$(CHECKOV_VENV),$(CHECKOV_PINS))

# $(call venv,DIR,PINS): DIR holds PINS exactly. Debian's Python makes venvs
# only with python3-venv (ensurepip): installed when the first try fails.
define venv
	if [ "$$(cat $(1)/pins.txt 2>/dev/null)" != "$(2)" ]; then \
		echo "installing $(2) into $(1)"; \
		{ [ -x $(1)/bin/pip ] || $(PYTHON) -m venv $(1) || { \
			echo "installing Debian python3-venv"; \
			$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq --no-install-recommends python3-venv >/dev/null && \
			$(PYTHON) -m venv --clear $(1); }; } && \
		$(1)/bin/pip install --quiet --disable-pip-version-check $(foreach p,$(2),'$(p)') && \
		echo '$(2)' > $(1)/pins.txt; \
	fi
endef

## One HTTP stack and one TLS stack: no second hyper or rustls major version.
check-deps-tree:
	@dups=$$(cargo tree --workspace -d -e normal --prefix depth --format '{p}' 2>/dev/null \
		| grep -E '^0(hyper|rustls|h2|ring|aws-lc-rs) v' | sed 's/^0//' | sort -u); \
	if [ -n "$$dups" ]; then echo "duplicate HTTP/TLS crates:"; echo "$$dups"; exit 1; fi; \
	echo "dependency tree: one hyper, one rustls"

# Every function's release build (cargo-lambda, arm64, provided.al2023).
lambdas: tools
	@rustup target list --installed | grep -q '^aarch64-unknown-linux-gnu$$' || rustup target add aarch64-unknown-linux-gnu
	cd $(ROOT) && $(LAMBDA_BUILD)

## Every Lambda built with cargo-lambda for arm64 (provided.al2023), as SAM deploys
## them; prints each zip's size.
package: lambdas
	@echo "function zips (budget 6 MB):"
	@for f in $(FUNCTIONS); do \
		zip="$(CARGO_TARGET_DIR)/lambda/$$f/bootstrap.zip"; \
		printf '  %-16s %9d bytes\n' "$$f" "$$(stat -c %s "$$zip")"; \
	done

## `sam build` on top of `make package`: each function's BuildMethod is makefile,
## so SAM runs build-<LogicalId> below, in this directory (build_in_source), and
## only copies the binaries into .aws-sam/build.
sam-build: package
	sam build --build-in-source

# SAM's build target of one function (`Metadata.BuildMethod: makefile`): the same
# build as `make package`, then the function's binary (its
# `Metadata.BuildProperties.Binary` in template.yaml) as ARTIFACTS_DIR/bootstrap.
build-%: lambdas
	@test -n "$(ARTIFACTS_DIR)" || { echo "$@: ARTIFACTS_DIR is set by sam build"; exit 1; }
	@binary=$$(awk -v id='$*' ' \
		$$0 == "  " id ":" { found = 1; next } \
		found && /^  [A-Za-z]/ { exit } \
		found && $$1 == "Binary:" { print $$2; exit }' $(ROOT)/template.yaml); \
	test -n "$$binary" || { echo "template.yaml: $* has no Metadata.BuildProperties.Binary"; exit 1; }; \
	mkdir -p "$(ARTIFACTS_DIR)" && \
	$(PYTHON) -m zipfile -e "$(CARGO_TARGET_DIR)/lambda/$$binary/bootstrap.zip" "$(ARTIFACTS_DIR)" && \
	chmod 0755 "$(ARTIFACTS_DIR)/bootstrap" && \
	echo "$*: $$binary → $(ARTIFACTS_DIR)/bootstrap"

## Build and deploy the stack kpi-integrations-$(STAGE) without a prompt:
##   make deploy STAGE=prod PUBLIC_URL=https://… AUTH_JWKS_URL=… AUTH_ISSUER=… AUTH_AUDIENCE=…
## optional: DOMAIN_NAME, CERTIFICATE_ARN, ALARM_TOPIC_ARN, AUTH_WORKSPACES_CLAIM,
## AUTH_ADMIN_CLAIM, OIDC_ISSUER, OIDC_CLIENT_ID, CORS_ORIGINS,
## PUBLIC_FUNCTION_CONCURRENCY, LOG_RETENTION_DAYS, REGION.
## Without PUBLIC_URL and DOMAIN_NAME a new stack is deployed twice: the second
## time with its own ApiUrl as PUBLIC_URL. docs/deploy.md has the details.
deploy:
	@test -n "$(STAGE)" || { echo "make deploy: STAGE is required (e.g. STAGE=prod); see docs/deploy.md"; exit 1; }
	$(MAKE) --no-print-directory sam-build
	STAGE='$(STAGE)' PUBLIC_URL='$(PUBLIC_URL)' AUTH_JWKS_URL='$(AUTH_JWKS_URL)' \
	AUTH_ISSUER='$(AUTH_ISSUER)' AUTH_AUDIENCE='$(AUTH_AUDIENCE)' \
	DOMAIN_NAME='$(DOMAIN_NAME)' CERTIFICATE_ARN='$(CERTIFICATE_ARN)' \
	ALARM_TOPIC_ARN='$(ALARM_TOPIC_ARN)' AUTH_WORKSPACES_CLAIM='$(AUTH_WORKSPACES_CLAIM)' \
	AUTH_ADMIN_CLAIM='$(AUTH_ADMIN_CLAIM)' OIDC_ISSUER='$(OIDC_ISSUER)' OIDC_CLIENT_ID='$(OIDC_CLIENT_ID)' \
	CORS_ORIGINS='$(CORS_ORIGINS)' PUBLIC_FUNCTION_CONCURRENCY='$(PUBLIC_FUNCTION_CONCURRENCY)' \
	LOG_RETENTION_DAYS='$(LOG_RETENTION_DAYS)' REGION='$(REGION)' \
		$(ROOT)/infra/deploy.sh

# The functions and the floor (`hello`) as `make package` builds them
# (position-dependent, .cargo/config.toml), for this machine's x86_64. With
# `--target`, build scripts and proc-macros keep their default.
BENCH_TARGET := x86_64-unknown-linux-gnu
BENCH_FUNCTIONS_BUILD := RUSTFLAGS='-C relocation-model=static' \
	cargo build --release --target $(BENCH_TARGET)

## Measurements against their floors, written into docs/benchmarks.md (see there).
bench: deps
	cargo build --release -p dev-server -p kpi-bench
	$(BENCH_FUNCTIONS_BUILD) $(addprefix -p ,$(FUNCTIONS)) -p hello
	$(CARGO_TARGET_DIR)/release/coldstart $(CARGO_TARGET_DIR)/$(BENCH_TARGET)/release 7
	$(CARGO_TARGET_DIR)/release/api_latency $(CARGO_TARGET_DIR)/release/dev-server 5
	@# The workers log one metrics line per sync: kept out of the terminal.
	@mkdir -p $(CARGO_TARGET_DIR)/bench
	$(CARGO_TARGET_DIR)/release/sync 1000 32 > $(CARGO_TARGET_DIR)/bench/sync.log
	@tail -n 3 $(CARGO_TARGET_DIR)/bench/sync.log
	$(CARGO_TARGET_DIR)/release/fanout 10000 5000 > $(CARGO_TARGET_DIR)/bench/fanout.log
	@tail -n 3 $(CARGO_TARGET_DIR)/bench/fanout.log
	$(CARGO_TARGET_DIR)/release/outage 200 > $(CARGO_TARGET_DIR)/bench/outage.log
	@grep -v '^{"ProviderCalls"' $(CARGO_TARGET_DIR)/bench/outage.log | tail -n 5
	@command -v cargo-bloat >/dev/null 2>&1 || cargo install --locked cargo-bloat
	cargo bloat --profile bloat -p api --crates -n 20 --message-format json > $(CARGO_TARGET_DIR)/bench/bloat.json
	$(CARGO_TARGET_DIR)/release/report

fmt:
	cargo fmt --all

clean:
	rm -rf .kpi .aws-sam
