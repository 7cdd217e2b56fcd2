# libonlinetrain - plain GNU make.
#
#   make            static and shared library, the `ot` program, examples
#   make demo       build and run the demo (the README's first command)
#   make check      build and run the Check suites (the README's second command)
#   make check-asan / check-valgrind / bench / fuzz / install / uninstall / clean
#   make docs       API reference (doxygen); make plots: charts into docs/img (gnuplot)
#
# Variables (override on the command line): CC CXX CFLAGS CPPFLAGS LDFLAGS
# PREFIX DESTDIR LIBDIR INCLUDEDIR BINDIR NNG_LIBS BLAS_LIBS V=1 BUILD=dir

SHELL := /bin/bash

# ---- version, read from the header --------------------------------------------
HEADER := include/onlinetrain.h
VMAJOR := $(shell sed -n 's/^\#define OT_VERSION_MAJOR \([0-9]*\).*/\1/p' $(HEADER))
VMINOR := $(shell sed -n 's/^\#define OT_VERSION_MINOR \([0-9]*\).*/\1/p' $(HEADER))
VPATCH := $(shell sed -n 's/^\#define OT_VERSION_PATCH \([0-9]*\).*/\1/p' $(HEADER))
VERSION := $(VMAJOR).$(VMINOR).$(VPATCH)
# Before 1.0 every minor release may break the ABI, so the soname carries it.
ifeq ($(VMAJOR),0)
SONAME_VERSION := $(VMAJOR).$(VMINOR)
else
SONAME_VERSION := $(VMAJOR)
endif

# ---- tools and flags ----------------------------------------------------------
CC ?= cc
CXX ?= c++
# make's built-in CXX is g++; with CC=clang use the matching clang++, so
# sanitizer runtimes agree (examples/*.cc link with the C objects).
ifeq ($(origin CXX),default)
ifneq ($(findstring clang,$(CC)),)
CXX := $(subst clang,clang++,$(CC))
endif
endif
CXXFLAGS ?= -O2 -g
WARN_CXXFLAGS := -std=c++17 -Wall -Wextra -Wpedantic -Wshadow -Werror
CLANG ?= clang
PKG_CONFIG ?= pkg-config
CFLAGS ?= -O2 -g
WARN_CFLAGS := -std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
               -Wmissing-prototypes -Werror
CPPFLAGS += -D_POSIX_C_SOURCE=200809L -Iinclude -Ilib
NNG_LIBS ?= -lnng
BLAS_LIBS ?= -lblas
ZLIB_LIBS ?= -lz
CHECK_LIBS ?= $(shell $(PKG_CONFIG) --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm)
LIBS := $(NNG_LIBS) $(BLAS_LIBS) $(ZLIB_LIBS) -lmbedcrypto -lpthread -ldl -lm
CPPFLAGS += -DOT_HAVE_ZLIB

PREFIX ?= /usr/local
EXEC_PREFIX ?= $(PREFIX)
LIBDIR ?= $(EXEC_PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(EXEC_PREFIX)/bin
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR ?= $(PREFIX)/share/man
DESTDIR ?=

BUILD ?= build
SAN_FLAGS ?=
# Sanitizer runtimes are linked into programs, not into the shared library.
NO_UNDEFINED ?= -Wl,--no-undefined

ifeq ($(V),1)
Q :=
else
Q := @
endif

# ---- sources ------------------------------------------------------------------
LIB_SRCS := $(sort $(wildcard lib/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
TOOL_SRCS := $(sort $(wildcard tools/*.c))
TOOL_OBJS := $(TOOL_SRCS:%.c=$(BUILD)/%.o)
TEST_SRCS := $(sort $(wildcard tests/*.c))
TEST_OBJS := $(TEST_SRCS:%.c=$(BUILD)/%.o)
BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)
EXAMPLE_SRCS := $(sort $(wildcard examples/*.c))
EXAMPLE_BINS := $(EXAMPLE_SRCS:examples/%.c=$(BUILD)/examples/%)
EXAMPLE_CXX_SRCS := $(sort $(wildcard examples/*.cc))
EXAMPLE_CXX_BINS := $(EXAMPLE_CXX_SRCS:examples/%.cc=$(BUILD)/examples/%)
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/*.c))
# Build directories of the sanitizer and fuzzing targets (override to keep
# several checkouts' or engineers' builds apart).
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_BUILD)/%)

STATIC_LIB := $(BUILD)/libonlinetrain.a
SHARED_LIB := $(BUILD)/libonlinetrain.so.$(VERSION)
SHARED_SONAME := libonlinetrain.so.$(SONAME_VERSION)
OT_BIN := $(BUILD)/ot
TEST_BIN := $(BUILD)/tests/runner

ALL_CFLAGS = $(WARN_CFLAGS) $(CFLAGS) $(SAN_FLAGS)
# lib/optim.c's per-weight loops (a sqrtf and a division each) vectorise only
# when sqrtf need not set errno and FP operations need not trap: the library
# reads errno after no math call and uses no FP exceptions, and the vector
# sqrt and division round as the scalar ones do (docs/models.md).  gcc's
# default -O2 cost model also refuses these loops.
OPTIM_CFLAGS := -fno-math-errno -fno-trapping-math
ifeq ($(findstring clang,$(CC)),)
OPTIM_CFLAGS += -fvect-cost-model=dynamic
endif
$(BUILD)/lib/optim.o: ALL_CFLAGS += $(OPTIM_CFLAGS)


.PHONY: all static shared tools examples check check-asan check-tsan check-openblas check-valgrind bench demo deps-dev \
        fuzz fuzz-run install uninstall clean deps deps-check docs docs-deps python-check

all: static shared tools examples

# Keep intermediate objects (and keep make from printing their removal after
# the test summary).
.SECONDARY:

static: $(STATIC_LIB)
shared: $(SHARED_LIB)
tools: $(OT_BIN)
examples: $(EXAMPLE_BINS) $(EXAMPLE_CXX_BINS)

# ---- dependencies (Debian packages) --------------------------------------------
DEB_PACKAGES := libnng-dev libblas-dev check pkg-config zlib1g-dev libmbedtls-dev
DEPS_PROBE := printf '\#include <nng/nng.h>\n\#include <cblas.h>\n\#include <check.h>\n\#include <zlib.h>\n\#include <mbedtls/md.h>\n' | \
              $(CC) -E -x c - >/dev/null 2>&1 && command -v $(PKG_CONFIG) >/dev/null 2>&1

# A cheap probe (one preprocessor run); installs only when something is missing.
deps-check:
	@$(DEPS_PROBE) || $(MAKE) --no-print-directory deps

# Tools for the sanitizer and fuzzing targets (clang and its runtimes), and
# NumPy for Debian's python3 (the Python binding's NumPy tests).
DEV_PACKAGES := clang libclang-rt-14-dev python3-numpy
deps-dev:
	@command -v $(CLANG) >/dev/null 2>&1 && \
	    printf 'int main(void){return 0;}\n' | $(CLANG) -fsanitize=address,undefined -x c - -o /dev/null 2>/dev/null && \
	    { ! command -v dpkg-query >/dev/null 2>&1 || \
	      dpkg-query -W -f='$${Status}' python3-numpy 2>/dev/null | grep -q 'install ok installed'; } || \
	    $(MAKE) --no-print-directory deps DEB_PACKAGES="$(DEV_PACKAGES)"

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all present ($(DEB_PACKAGES))"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "deps: installing$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	else \
	    echo "deps: missing$$missing; run as root: apt-get install$$missing" >&2; exit 1; \
	fi

# ---- compile ------------------------------------------------------------------
$(BUILD)/lib/%.o: lib/%.c | deps-check
	@mkdir -p $(@D)
	$(if $(Q),@echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) -DOT_BUILDING_LIBRARY $(ALL_CFLAGS) -fPIC -fvisibility=hidden -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.c | deps-check
	@mkdir -p $(@D)
	$(if $(Q),@echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) -DOT_BUILD_DIR='"$(BUILD)"' -DOT_CC='"$(CC)"' -DOT_CXX='"$(CXX)"' \
	    -DOT_CFLAGS='"$(CFLAGS)"' -DOT_SAN_FLAGS='"$(SAN_FLAGS)"' \
	    $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(STATIC_LIB): $(LIB_OBJS)
	$(if $(Q),@echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(SHARED_LIB): $(LIB_OBJS) lib/libonlinetrain.map
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) -shared -Wl,-soname,$(SHARED_SONAME) -Wl,--version-script=lib/libonlinetrain.map \
	    $(NO_UNDEFINED) $(SAN_FLAGS) $(LDFLAGS) -o $@ $(LIB_OBJS) $(LIBS)
	$(Q)ln -sf $(notdir $@) $(BUILD)/$(SHARED_SONAME)
	$(Q)ln -sf $(notdir $@) $(BUILD)/libonlinetrain.so

$(OT_BIN): $(TOOL_OBJS) $(STATIC_LIB)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(SAN_FLAGS) $(LDFLAGS) -o $@ $(TOOL_OBJS) $(STATIC_LIB) $(LIBS)

$(BUILD)/examples/%: $(BUILD)/examples/%.o $(STATIC_LIB)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(SAN_FLAGS) $(LDFLAGS) -o $@ $< $(STATIC_LIB) $(LIBS)

# C++ examples (examples/*.cc): compiled and linked in one step with $(CXX).
$(EXAMPLE_CXX_BINS): $(BUILD)/examples/%: examples/%.cc $(STATIC_LIB) $(HEADER) | deps-check
	@mkdir -p $(@D)
	$(if $(Q),@echo "  CXX     $<")
	$(Q)$(CXX) -Iinclude $(WARN_CXXFLAGS) $(CXXFLAGS) $(SAN_FLAGS) $(LDFLAGS) -pthread -o $@ $< \
	    $(STATIC_LIB) $(LIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(STATIC_LIB)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(SAN_FLAGS) $(LDFLAGS) -o $@ $< $(STATIC_LIB) $(LIBS)

$(TEST_BIN): $(TEST_OBJS) $(STATIC_LIB)
	@mkdir -p $(@D)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(SAN_FLAGS) $(LDFLAGS) -o $@ $(TEST_OBJS) $(STATIC_LIB) $(LIBS) $(CHECK_LIBS)

# ---- tests ----------------------------------------------------------------------
# The runner takes Check's own variables: CK_RUN_SUITE, CK_RUN_CASE,
# CK_INCLUDE_TAGS, CK_EXCLUDE_TAGS, CK_FORK, CK_VERBOSITY.
check: all $(TEST_BIN)
	$(Q)OT_BUILD=$(BUILD) ./$(TEST_BIN)

check-asan: deps-dev
	$(Q)$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) CC=$(CLANG) \
	    CFLAGS="-O1 -g -fno-omit-frame-pointer" \
	    SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all" NO_UNDEFINED= \
	    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 check

# The model suite (which compares the CBLAS deep path with plain C) against
# Debian's OpenBLAS as libblas.so.3, without changing the system's default
# BLAS.  Needs the package libopenblas0-pthread (a test-only install).
check-openblas: all $(TEST_BIN)
	$(Q)lib=$$(dpkg -L libopenblas0-pthread 2>/dev/null | grep '/libblas\.so\.3$$' | head -n 1); \
	if [ -z "$$lib" ]; then echo "check-openblas: apt-get install libopenblas0-pthread first" >&2; exit 1; fi; \
	LD_LIBRARY_PATH=$$(dirname $$lib) ./$(OT_BIN) version | grep -q 'blas OpenBLAS' && \
	OT_BUILD=$(BUILD) CK_RUN_SUITE=model LD_LIBRARY_PATH=$$(dirname $$lib) ./$(TEST_BIN)

# ThreadSanitizer over the threaded suites (roles, predictor, transport by
# default; CK_RUN_SUITE picks others).  tests/tsan.supp hides reports whose
# frames are all inside libnng, which is not instrumented.
check-tsan: deps-dev
	$(Q)$(MAKE) --no-print-directory BUILD=$(TSAN_BUILD) CC=$(CLANG) CFLAGS="-O1 -g" \
	    SAN_FLAGS="-fsanitize=thread" NO_UNDEFINED= $(TSAN_BUILD)/tests/runner
	$(Q)for s in $${CK_RUN_SUITE:-transport roles predictor}; do \
	    OT_BUILD=$(TSAN_BUILD) CK_RUN_SUITE=$$s TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	    ./$(TSAN_BUILD)/tests/runner || exit 1; done

# valgrind follows Check's forked children; a leak or error in any fails the run.
# --fair-sched: threads take turns, so a thread that spins (the torn-read
# tests' readers) cannot starve the one it waits for.
# The "build" tests run compilers and nm, which are not ours to check.
check-valgrind: all $(TEST_BIN)
	$(Q)OT_BUILD=$(BUILD) OT_VALGRIND=1 CK_DEFAULT_TIMEOUT=300 CK_TIMEOUT_MULTIPLIER=5 CK_EXCLUDE_TAGS="build $(CK_EXCLUDE_TAGS)" \
	    valgrind -q --fair-sched=yes --suppressions=$(CURDIR)/tests/valgrind.supp \
	    --trace-children=yes --trace-children-skip='*/sh,*/bash,*/env' \
	    --leak-check=full --show-possibly-lost=no --errors-for-leak-kinds=definite --error-exitcode=99 \
	    ./$(TEST_BIN)

# ---- benchmarks, demo, fuzzing ------------------------------------------------
bench: $(BENCH_BINS)
	$(Q)for b in $(BENCH_BINS); do echo "# $$b"; ./$$b || exit 1; done

demo: all
	$(Q)./scripts/demo.sh $(OT_BIN)

# Kill the server CHAOS_KILLS times under four trainers and check that no
# acknowledged delta was lost or applied twice (scripts/chaos.sh).
CHAOS_KILLS ?= 20
CHAOS_BIN := $(BUILD)/tests/chaos/chaos_check
$(CHAOS_BIN): $(BUILD)/tests/chaos/chaos_check.o $(STATIC_LIB)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(SAN_FLAGS) $(LDFLAGS) -o $@ $< $(STATIC_LIB) $(LIBS)

.PHONY: chaos
chaos: $(OT_BIN) $(CHAOS_BIN)
	$(Q)./scripts/chaos.sh $(OT_BIN) $(CHAOS_BIN) $(CHAOS_KILLS)

FUZZ_SECONDS ?= 60
FUZZ_LIB_SRCS := $(LIB_SRCS)
# The library is compiled once for every fuzz target, with coverage
# instrumentation (fuzzer-no-link) and the sanitizers.
FUZZ_FLAGS := -g -O1 -fsanitize=address,undefined
FUZZ_LIB_OBJS := $(FUZZ_LIB_SRCS:lib/%.c=$(FUZZ_BUILD)/lib/%.o)
$(FUZZ_BUILD)/lib/%.o: lib/%.c | deps-check
	@mkdir -p $(@D)
	$(if $(Q),@echo "  CC      $< (fuzz)")
	$(Q)$(CLANG) $(CPPFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/%: tests/fuzz/%.c $(FUZZ_LIB_OBJS) | deps-check
	@mkdir -p $(@D)
	$(if $(Q),@echo "  FUZZ    $@")
	$(Q)$(CLANG) $(CPPFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJS) $(LIBS)

fuzz: deps-dev
	$(Q)$(MAKE) --no-print-directory fuzz-run

fuzz-run: $(FUZZ_BINS)
	$(Q)for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p $(FUZZ_BUILD)/corpus-$$n; \
	    echo "# fuzz $$n for $(FUZZ_SECONDS)s"; \
	    ./$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(FUZZ_BUILD)/corpus-$$n tests/fuzz/corpus/$$n \
	        2>$(FUZZ_BUILD)/$$n.log || { tail -50 $(FUZZ_BUILD)/$$n.log; exit 1; }; \
	    grep -E 'stat::number_of_executed_units' $(FUZZ_BUILD)/$$n.log; done

# ---- install ------------------------------------------------------------------
$(BUILD)/onlinetrain.pc: onlinetrain.pc.in $(HEADER)
	@mkdir -p $(@D)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' -e 's|@LIBS@|$(LIBS)|' $< > $@

install: all $(BUILD)/onlinetrain.pc
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 $(HEADER) $(DESTDIR)$(INCLUDEDIR)/onlinetrain.h
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(LIBDIR)/libonlinetrain.a
	install -m 755 $(SHARED_LIB) $(DESTDIR)$(LIBDIR)/libonlinetrain.so.$(VERSION)
	ln -sf libonlinetrain.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SHARED_SONAME)
	ln -sf libonlinetrain.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libonlinetrain.so
	install -m 644 $(BUILD)/onlinetrain.pc $(DESTDIR)$(PKGCONFIGDIR)/onlinetrain.pc
	install -m 755 $(OT_BIN) $(DESTDIR)$(BINDIR)/ot
	install -d $(DESTDIR)$(MANDIR)/man1
	install -m 644 docs/ot.1 $(DESTDIR)$(MANDIR)/man1/ot.1

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/onlinetrain.h $(DESTDIR)$(LIBDIR)/libonlinetrain.a \
	    $(DESTDIR)$(LIBDIR)/libonlinetrain.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SHARED_SONAME) \
	    $(DESTDIR)$(LIBDIR)/libonlinetrain.so $(DESTDIR)$(PKGCONFIGDIR)/onlinetrain.pc \
	    $(DESTDIR)$(BINDIR)/ot $(DESTDIR)$(MANDIR)/man1/ot.1

# ---- reference documentation, Python binding --------------------------------------
# `make docs` runs doxygen on the public header into $(BUILD)/docs/html and
# fails on any warning (an undocumented public symbol among them).  doxygen
# is an optional dependency, installed here rather than by `make deps`.
DOCS_PACKAGES := doxygen
DOXYGEN ?= doxygen

docs-deps:
	@command -v $(DOXYGEN) >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "docs: installing $(DOCS_PACKAGES)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $(DOCS_PACKAGES) >/dev/null; \
	else \
	    echo "docs: $(DOXYGEN) not found; run as root: apt-get install $(DOCS_PACKAGES)" >&2; exit 1; \
	fi

docs: docs-deps
	@mkdir -p $(BUILD)/docs
	$(Q)OT_DOCS_OUT=$(BUILD)/docs OT_VERSION=$(VERSION) $(DOXYGEN) docs/Doxyfile
	@if [ -s $(BUILD)/docs/warnings.log ]; then cat $(BUILD)/docs/warnings.log >&2; \
	    echo "docs: doxygen warnings (above)" >&2; exit 1; fi
	@echo "docs: $(BUILD)/docs/html/index.html"

# `make plots` runs `ot cluster` on generated drifting streams and renders
# PNG charts with gnuplot into $(PLOTS_DIR) (scripts/plots.sh; docs/tuning.md
# explains them).  gnuplot is an optional dependency, installed here.
PLOTS_PACKAGES := gnuplot-nox
GNUPLOT ?= gnuplot
PLOTS_DIR ?= docs/img
.PHONY: plots plots-deps
plots-deps:
	@command -v $(GNUPLOT) >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "plots: installing $(PLOTS_PACKAGES)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $(PLOTS_PACKAGES) >/dev/null; \
	else \
	    echo "plots: $(GNUPLOT) not found; run as root: apt-get install $(PLOTS_PACKAGES)" >&2; exit 1; \
	fi

plots: plots-deps $(OT_BIN)
	$(Q)GNUPLOT=$(GNUPLOT) ./scripts/plots.sh $(OT_BIN) $(PLOTS_DIR)

# The binding's tests, against this build's shared library.
PYTHON ?= python3
python-check: shared
	$(Q)ONLINETRAIN_LIB=$(abspath $(BUILD))/libonlinetrain.so PYTHONDONTWRITEBYTECODE=1 \
	    $(PYTHON) -m unittest discover -s bindings/python/tests -t bindings/python/tests

clean:
	rm -rf build $(ASAN_BUILD) $(FUZZ_BUILD) $(TSAN_BUILD)

-include $(FUZZ_LIB_OBJS:.o=.d) $(LIB_OBJS:.o=.d) $(TOOL_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(BENCH_BINS:=.d) $(EXAMPLE_BINS:=.d)
