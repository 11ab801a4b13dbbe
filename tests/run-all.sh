#!/usr/bin/env bash
# Runs strata's whole test suite. On a fresh machine run it as root: it installs the Debian
# packages the tests use (real mkfs/mount tools, loop devices), then checks formatting and
# lints and runs every test. As a normal user the tests that need root are skipped, and
# listed at the end of the run; with CI set (.ci/run sets it) nothing may be skipped and a
# missing tool or privilege fails the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Tools the tests and fixture scripts call.
# g++: libFuzzer, built by cargo-fuzz. sleuthkit (fls, icat): a second reader of NTFS test disks.
# chromium, chromium-driver, python3-venv, fonts-dejavu-core: the headless browser tests of
# `strata serve` (tests/browser), with Selenium in the venv below.
# curl: the independent S3 client of tests/object_storage.rs (Garage, below, is the server).
PKGS=(gdisk fdisk dosfstools mtools ntfs-3g e2fsprogs fuse3 zstd faketime util-linux mount python3
      exfatprogs exfat-fuse attr tar procps libwim15 g++ sleuthkit
      chromium chromium-driver python3-venv fonts-dejavu-core curl)

missing=()
for p in "${PKGS[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *' installed' ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "==> installing: ${missing[*]}"
    apt=(apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
    "${apt[@]}" update -qq
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}"
  elif [ -n "${CI:-}" ]; then
    echo "error: missing packages ${missing[*]} and not root to install them" >&2
    exit 1
  else
    echo "note: missing packages ${missing[*]}; tests that need them will fail (run as root to install)" >&2
  fi
fi

# Selenium for the browser tests, from PyPI: Debian's python is externally managed (PEP 668), so
# it lives in a venv at a fixed place per machine, made once; the tests run $STRATA_PYTHON.
venv=/var/cache/strata-venv
selenium=4.51.0
if ! compgen -G "$venv/lib/python3*/site-packages/selenium-$selenium.dist-info" >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "==> installing selenium $selenium in $venv"
    # Debian's python, not one earlier on PATH (pyenv); --clear redoes a half-made venv.
    [ -x "$venv/bin/pip" ] || /usr/bin/python3 -m venv --clear "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "selenium==$selenium"
  elif [ -n "${CI:-}" ]; then
    echo "error: no selenium $selenium in $venv and not root to install it" >&2
    exit 1
  else
    echo "note: no selenium $selenium in $venv; the browser tests will fail (run as root to install)" >&2
  fi
fi
export STRATA_PYTHON=$venv/bin/python3

if ! command -v cargo >/dev/null; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null || { echo "error: cargo not found; install Rust (rustup) first" >&2; exit 1; }
cargo --version

# Garage, the S3-compatible server the object storage tests start (tests/common/s3.rs), from
# crates.io: a separate program, never linked. `cargo install` puts it in cargo's bin directory
# (~/.cargo/bin, root or not; the first build takes 10-25 minutes), put on PATH for the tests.
garage=2.5.0
cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
case ":$PATH:" in *":$cargo_bin:"*) ;; *) export PATH="$cargo_bin:$PATH" ;; esac
if ! garage --version 2>/dev/null | grep -qE "(^|[^0-9.])${garage//./\\.}([^0-9.]|$)"; then
  echo "==> installing garage $garage (cargo install)"
  if ! cargo install garage --locked --version "$garage"; then
    if [ -n "${CI:-}" ]; then
      echo "error: could not install garage $garage" >&2
      exit 1
    fi
    echo "note: no garage $garage; the object storage tests will be skipped" >&2
  fi
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "==> cargo test"
# A test that cannot run here (no root, no /dev/fuse) returns early, which libtest counts as
# passed: each one writes a line to this file, listed at the end (under CI it fails instead).
export STRATA_SKIPPED
STRATA_SKIPPED=$(mktemp -t strata-skipped.XXXXXX)
report_skips() {
  if [ -s "$STRATA_SKIPPED" ]; then
    echo "==> $(wc -l <"$STRATA_SKIPPED") tests were SKIPPED (not run, though counted as passed):"
    sort "$STRATA_SKIPPED"
  fi
  rm -f "$STRATA_SKIPPED"
}
trap report_skips EXIT
cargo test --all-targets
# Every fuzz target for a short bounded time (FUZZ_SECONDS each; 0 skips): a crash, hang or
# runaway allocation fails the run. Longer runs: fuzz/run.sh SECONDS.
if [ "${FUZZ_SECONDS:-15}" != 0 ]; then
  echo "==> fuzzing (fuzz/run.sh ${FUZZ_SECONDS:-15})"
  ./fuzz/run.sh "${FUZZ_SECONDS:-15}"
fi
