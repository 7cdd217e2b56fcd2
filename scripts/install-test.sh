#!/bin/sh
# install-test.sh - installs the library into a temporary DESTDIR and uses it
# as a user would: builds the examples against the installed header and
# library with nothing but `pkg-config --cflags --libs onlinetrain`, runs
# one, links one statically (pkg-config --static), checks the man page and
# `ot`, then uninstalls and checks nothing is left.
#
# Environment: BUILD (build directory, default build), MAKE, CC, CXX,
# INSTALL_TEST_CFLAGS (extra compiler flags, e.g. sanitizers to match a
# sanitized build), KEEP=1 to keep the temporary directory.
# Prints "install-test: ok" and exits 0 on success.
set -eu

BUILD=${BUILD:-build}
MAKE=${MAKE:-make}
CC=${CC:-cc}
CXX=${CXX:-c++}
EXTRA=${INSTALL_TEST_CFLAGS:-}
PREFIX=/usr/local

cd "$(dirname "$0")/.."
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ot-install-test.XXXXXX")
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$tmp"; }
trap cleanup EXIT
dest="$tmp/root"
fail() { echo "install-test: FAIL: $*" >&2; exit 1; }

# A sub-make started from a recipe inherits MAKEFLAGS; its jobserver file
# descriptors are not ours to use.
MAKEFLAGS=$(printf '%s' "${MAKEFLAGS:-}" | sed 's/--jobserver-[a-z]*=[^ ]*//g')
export MAKEFLAGS

"$MAKE" --no-print-directory BUILD="$BUILD" DESTDIR="$dest" PREFIX="$PREFIX" install \
    >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; fail "make install"; }

libdir="$dest$PREFIX/lib"
for f in "$dest$PREFIX/include/onlinetrain.h" "$libdir/libonlinetrain.a" \
         "$libdir/libonlinetrain.so" "$libdir/pkgconfig/onlinetrain.pc" \
         "$dest$PREFIX/bin/ot" "$dest$PREFIX/share/man/man1/ot.1"; do
    [ -e "$f" ] || fail "not installed: ${f#$dest}"
done

# pkg-config sees only what was installed; the sysroot maps its paths into DESTDIR.
PKG_CONFIG_LIBDIR="$libdir/pkgconfig"
PKG_CONFIG_PATH=
PKG_CONFIG_SYSROOT_DIR="$dest"
export PKG_CONFIG_LIBDIR PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
cflags=$(pkg-config --cflags onlinetrain) || fail "pkg-config --cflags"
libs=$(pkg-config --libs onlinetrain) || fail "pkg-config --libs"
case "$cflags" in *"$dest$PREFIX/include"*) ;; *) fail "Cflags do not point into DESTDIR: $cflags" ;; esac
[ "$(pkg-config --modversion onlinetrain)" = \
  "$(sed -n 's/^#define OT_VERSION_MAJOR \([0-9]*\).*/\1/p' include/onlinetrain.h).$(sed -n 's/^#define OT_VERSION_MINOR \([0-9]*\).*/\1/p' include/onlinetrain.h).$(sed -n 's/^#define OT_VERSION_PATCH \([0-9]*\).*/\1/p' include/onlinetrain.h)" ] \
    || fail "pkg-config --modversion differs from the header"

# Every C example, against the installed shared library, built as
# examples/README.md says (`cc prog.c $(pkg-config --cflags --libs
# onlinetrain)`).  The tree's include path is not given: only the installed
# header can be found.
n=0
for src in examples/*.c; do
    name=$(basename "$src" .c)
    # shellcheck disable=SC2086
    "$CC" $EXTRA $cflags -o "$tmp/$name" "$src" $libs \
        >"$tmp/$name.log" 2>&1 || { cat "$tmp/$name.log" >&2; fail "build $src"; }
    n=$((n + 1))
done
[ "$n" -gt 0 ] || fail "no examples/*.c"
# The C++ example too, with the same flags.
for src in examples/*.cc; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .cc)
    # shellcheck disable=SC2086
    "$CXX" -std=c++17 $EXTRA $cflags -pthread -o "$tmp/$name" "$src" $libs \
        >"$tmp/$name.log" 2>&1 || { cat "$tmp/$name.log" >&2; fail "build $src"; }
    n=$((n + 1))
done

# Run one: it must load the installed library, not another.
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
if command -v ldd >/dev/null 2>&1; then
    ldd "$tmp/cluster_inproc" | grep -q "$libdir/libonlinetrain.so" \
        || fail "cluster_inproc does not load the installed library: $(ldd "$tmp/cluster_inproc")"
fi
"$tmp/cluster_inproc" >"$tmp/run.log" 2>&1 || { cat "$tmp/run.log" >&2; fail "cluster_inproc"; }
grep -q "master version" "$tmp/run.log" || { cat "$tmp/run.log" >&2; fail "cluster_inproc output"; }

# Static linking: Libs.private must name everything the archive needs.
static_libs=$(pkg-config --static --libs-only-l onlinetrain | sed 's/-lonlinetrain//')
# shellcheck disable=SC2086
"$CC" $EXTRA $cflags -o "$tmp/cluster_static" examples/cluster_inproc.c \
    "$libdir/libonlinetrain.a" $static_libs >"$tmp/static.log" 2>&1 \
    || { cat "$tmp/static.log" >&2; fail "static link with pkg-config --static"; }
"$tmp/cluster_static" >"$tmp/run-static.log" 2>&1 || { cat "$tmp/run-static.log" >&2; fail "cluster_static"; }

# The program and its man page.
"$dest$PREFIX/bin/ot" version | grep -q "libonlinetrain" || fail "ot version"
if command -v groff >/dev/null 2>&1; then
    groff -man -ww -z "$dest$PREFIX/share/man/man1/ot.1" 2>"$tmp/man.log" || fail "man page"
    [ ! -s "$tmp/man.log" ] || { cat "$tmp/man.log" >&2; fail "man page warnings"; }
fi

# Uninstall removes every file install put there.
"$MAKE" --no-print-directory BUILD="$BUILD" DESTDIR="$dest" PREFIX="$PREFIX" uninstall \
    >"$tmp/uninstall.log" 2>&1 || { cat "$tmp/uninstall.log" >&2; fail "make uninstall"; }
left=$(find "$dest" -type f -o -type l)
[ -z "$left" ] || fail "left after uninstall: $left"

echo "install-test: ok ($n examples built against $PREFIX in a DESTDIR, one run, one static)"
