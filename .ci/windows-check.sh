#!/usr/bin/env bash
# Checks the Windows build of strata from Linux: type-check and clippy (-D warnings) for
# x86_64-pc-windows-gnu, a build of strata.exe, and every test executable run under wine.
#
# No Windows toolchain can be downloaded here, so Debian's rustc-web/cargo-web rebuild std
# for the target from rust-web-src (-Zbuild-std, which needs RUSTC_BOOTSTRAP on a stable
# compiler), mingw-w64 links, and wine64 runs the tests. The rustup toolchain is left
# alone: every tool is called by its /usr/bin path and builds go to target/windows.
#
# usage: .ci/windows-check.sh [-- TEST_ARGS...]     (root installs missing packages)
# Last line: `windows-check: N passed, M failed`; exit status non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
TARGET=x86_64-pc-windows-gnu
TDIR=$ROOT/target/windows
WINE=/usr/lib/wine/wine64
T0=$SECONDS
step() { printf '\n==> [%ss] %s\n' "$((SECONDS - T0))" "$*"; }
die() { echo "windows-check: error: $*" >&2; exit 1; }
test_args=()
[ "${1:-}" = -- ] && { shift; test_args=("$@"); }

step "packages"
PKGS=(rustc-web cargo-web rust-web-src rust-web-clippy gcc-mingw-w64-x86-64
      binutils-mingw-w64-x86-64 wine64)
missing=()
for p in "${PKGS[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *' installed' ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]}; run as root to install them"
  apt=(apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
  "${apt[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}"
fi
/usr/bin/rustc -V

# Debian's toolchain only; no rustup proxy, wrapper or target override may leak in.
export PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
unset RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_BUILD_TARGET CARGO_TARGET_DIR
export CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar
ARGS=(-Zbuild-std=std,panic_abort,test --target "$TARGET" --target-dir "$TDIR")

step "cargo check --all-targets ($TARGET)"
/usr/bin/cargo check --all-targets "${ARGS[@]}"
step "cargo clippy --all-targets -- -D warnings ($TARGET)"
CARGO=/usr/bin/cargo /usr/bin/cargo-clippy clippy --all-targets "${ARGS[@]}" -- -D warnings
step "cargo build + test executables"
/usr/bin/cargo build "${ARGS[@]}"
/usr/bin/cargo test --no-run --message-format=json-render-diagnostics "${ARGS[@]}" \
  >"$TDIR/test-build.json"

step "wine prefix"
HELP=$TDIR/wine-helpers
mkdir -p "$HELP"
# Rust's std imports ProcessPrng from bcryptprimitives.dll, which Debian's wine lacks;
# this stand-in forwards it to RtlGenRandom.
cat >"$HELP/bcryptprimitives.c" <<'C'
#include <windows.h>
#include <ntsecapi.h>
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, n)) return FALSE;
        data += n; len -= n;
    }
    return TRUE;
}
C
x86_64-w64-mingw32-gcc -shared -O2 -s -o "$HELP/bcryptprimitives.dll" \
  "$HELP/bcryptprimitives.c" -ladvapi32
export WINEDEBUG=-all WINEDLLOVERRIDES='mscoree,mshtml=' WINEPREFIX
WINEPREFIX=$(mktemp -d -t strata-wine.XXXXXX)
unset DISPLAY WAYLAND_DISPLAY
cleanup() {
  /usr/lib/wine/wineserver64 -k 2>/dev/null || true
  /usr/lib/wine/wineserver64 -w 2>/dev/null || true
  rm -rf "$WINEPREFIX"
}
trap cleanup EXIT
# A lingering wineserver keeps the many short wine runs fast; started on /dev/null so that
# its services never hold a pipe of ours open.
/usr/lib/wine/wineserver64 -p900 </dev/null >/dev/null 2>&1 || true
"$WINE" wineboot --init </dev/null >/dev/null 2>&1 || die "wineboot failed"
export WINEPATH="Z:${HELP//\//\\}"

# The names of the tests a libtest log reports as failed, one a line, sorted: its
# "test NAME ... FAILED" lines, and the list under the last "failures:" before each
# "test result" (all that --quiet prints).
failed_tests() {
  {
    sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$1"
    awk '/^failures:$/ { n = 0; on = 1; next }
         /^test result:/ { for (i = 0; i < n; i++) print names[i]; on = 0; n = 0; next }
         on && /^    [^ ]+$/ { names[n++] = substr($0, 5) }' "$1"
  } | sort -u
}

passed=0 bad=() reruns=()
mapfile -t tests < <(grep '"profile":{[^}]*"test":true}' "$TDIR/test-build.json" \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
((${#tests[@]})) || die "no test executables were built"
for exe in "${tests[@]}"; do
  name=${exe##*/}
  step "wine ${exe#"$TDIR/"}"
  rc=0
  timeout 900 "$WINE" "$exe" "${test_args[@]}" </dev/null >"$HELP/last.log" 2>&1 || rc=$?
  cat "$HELP/last.log"
  if ((rc != 0)); then
    # Wine itself fails now and then under load (e.g. CreateProcess answering "Internal
    # error" when a test spawns strata.exe): a failed executable gets one more run. A test
    # that fails in both runs fails the check, as does a second run that fails without
    # naming a test (a crash hides which tests fail); every rerun is listed at the end.
    first=$(failed_tests "$HELP/last.log")
    step "wine ${exe#"$TDIR/"} (second run)"
    rc2=0
    timeout 900 "$WINE" "$exe" "${test_args[@]}" </dev/null >"$HELP/last.log" 2>&1 || rc2=$?
    cat "$HELP/last.log"
    second=$(failed_tests "$HELP/last.log")
    twice=$(comm -12 <(echo "$first") <(echo "$second") | sed '/^$/d')
    # shellcheck disable=SC2086 # test names have no spaces: one line for the summary
    reruns+=("$name: first run exit $rc, failed: $(echo ${first:-no test named}); second \
run exit $rc2, failed: $(echo ${second:-none})")
    if [ -n "$twice" ]; then
      # shellcheck disable=SC2086
      bad+=("$name: failed in both runs: $(echo $twice)")
    elif ((rc2 != 0)) && [ -z "$second" ]; then
      bad+=("$name (exit $rc, then $rc2 without naming a test)")
    fi
  fi
  read -r p _ < <(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed;.*/\1 \2/p' \
    "$HELP/last.log" | awk '{p+=$1; f+=$2} END {print p+0, f+0}')
  passed=$((passed + p))
done
((${#reruns[@]} == 0)) || printf 'rerun under wine: %s\n' "${reruns[@]}"
((${#bad[@]} == 0)) || printf 'failed under wine: %s\n' "${bad[@]}"
echo "windows-check: $passed tests passed, ${#bad[@]} executables failed, ${#reruns[@]} rerun"
((${#bad[@]} == 0))
