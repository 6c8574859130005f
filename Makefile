# zcopy: zero-copy data movement on Linux, and the emulated-hardware platform
# that tests it. `make help` lists the targets.
SHELL := /bin/bash
export CARGO_TARGET_DIR := $(CURDIR)/target

CMD ?= uname -r
# KERNEL=stock|backports|debug: the guest kernel of every target that boots
# one (qemu/toolbox/recipe.sh); stock when unset.
ifneq ($(KERNEL),)
export ZCOPY_KERNEL := $(KERNEL)
endif

# shell-quote TEXT: TEXT as one single-quoted shell word. $(value ...) hands
# it over unexpanded, so the shell gets `$d` as written, not make's $(d).
shell-quote = '$(subst ','\'',$(1))'

.PHONY: help demo qemu-test qemu-test-backports qemu-test-debug qemu-test-2node test lint driver-check loom bootstrap toolbox qemu-exec \
	qemu-shell bench bench-ipc bench-rdma bench-pipeline bench-vfio bench-platform clean

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

demo: ## the main job: zcopy info, the pipeline (eleven ways), short IPC and RDMA benches, a report in target/demo/
	@ci/bootstrap.sh
	@ci/demo.sh

qemu-test: ## the whole suite (host, then guest; JUnit in target/qemu-test/); ONLY='driver card' and FILTER=NAME run just those guest tests
	@$(if $(value ONLY),ZCOPY_ONLY=$(call shell-quote,$(value ONLY))) \
		$(if $(value FILTER),ZCOPY_FILTER=$(call shell-quote,$(value FILTER))) ci/qemu-test.sh

qemu-test-backports: ## the whole suite on the newest trixie-backports kernel (as make qemu-test KERNEL=backports)
	@ZCOPY_KERNEL=backports ci/qemu-test.sh

qemu-test-debug: ## the debug kernel (KASAN, lockdep, UBSAN, DMA-API, kmemleak, fail-nth): driver, card, RDMA, fuzz; coverage in target/qemu-test-debug/; ONLY= as for qemu-test
	@$(if $(value ONLY),ZCOPY_ONLY=$(call shell-quote,$(value ONLY))) ci/qemu-test-debug.sh

qemu-test-2node: ## the RDMA channel between two guests joined by a link (JUnit in target/qemu-test-2node/)
	@ci/qemu-test-2node.sh

test: ## host-side tests only (cargo test --workspace)
	@ci/bootstrap.sh
	cargo test --workspace

loom: ## model-check the ring's atomics with loom (also run by make qemu-test)
	@ci/bootstrap.sh
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$(CURDIR)/target/loom cargo test -p zcopy --lib --release loom

lint: ## cargo fmt --check, clippy and rustdoc -D warnings, actionlint on the workflow, shellcheck
	@ci/bootstrap.sh
	@ci/lint.sh

driver-check: ## zcard.ko with W=1, sparse and checkpatch --strict against both guest kernels (stock, backports)
	@ci/bootstrap.sh
	@ci/build-driver.sh check stock backports

bootstrap: ## install what the host needs (apt, only what is missing)
	@ci/bootstrap.sh

toolbox: ## rebuild the toolbox (Debian trixie root with QEMU, kernel, rdma-core)
	@ci/bootstrap.sh
	@qemu/toolbox/toolbox.sh build

qemu-exec: ## run CMD='...' in a guest set up as the tests see it; exits with its code
	@ci/bootstrap.sh
	@qemu/run.sh -- sh -c $(call shell-quote,$(value CMD))

qemu-shell: ## an interactive shell in the guest
	@ci/bootstrap.sh
	@qemu/run.sh --interactive -- bash -i

bench: ## benchmarks (tables, JSON, plots), never timed tests
	@ci/bootstrap.sh
	cargo bench -p zcopy-bench --bench copy_engine
	@ci/bench-ipc.sh
	@ci/bench-rdma.sh
	@ci/bench-pipeline.sh
	@ci/bench-vfio.sh
	@ci/bench-platform.sh

bench-ipc: ## IPC only: zcopy channels vs pipe, socket, mq, copying ring, iceoryx2 (host)
	@ci/bootstrap.sh
	@ci/bench-ipc.sh

bench-rdma: ## RDMA only: the channel vs ib_write_bw, ib_send_lat, ib_write_lat (guest, same boot)
	@ci/bootstrap.sh
	@ci/bench-rdma.sh

bench-pipeline: ## zcopy pipeline's full run: 64 MiB, 5 runs, eleven ways to a local and a network peer (guest)
	@ci/bootstrap.sh
	@ci/bench-pipeline.sh

bench-vfio: ## the card through zcard.ko and through the VFIO driver: 4 KiB COPY at depth 1 and 32 (guest, two boots)
	@ci/bootstrap.sh
	@ci/bench-vfio.sh

bench-platform: ## toolbox build (cold), boot-to-first-command, qemu-test warm/cold
	@ci/bootstrap.sh
	@ci/bench-platform.sh

clean: ## remove build output (the cached toolbox stays: make toolbox rebuilds it)
	rm -rf target
