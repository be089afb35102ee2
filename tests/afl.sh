#!/usr/bin/env bash
# Coverage-guided fuzzing with AFL++ through afl.rs (`cargo afl`, stable Rust and a C compiler),
# over the targets of src/fuzz.rs: the documented long runs beside tests/run.sh fuzz (which is
# guided by outcome labels only). Not part of CI.
#
#   tests/afl.sh TARGET [SECONDS]   one target (default 600 s), e.g. tests/afl.sh x509 3600
#   tests/afl.sh all [SECONDS]      every target in turn, SECONDS each
#
# Installs cargo-afl from crates.io if it is missing, builds tests/afl (its own crate, so the main
# build never needs AFL) with `cargo afl build --release`, seeds AFL with tests/fuzz/corpus/TARGET
# and tests/fuzz/regressions/TARGET, and runs `cargo afl fuzz` for SECONDS. Prints one line per
# target,
#   FUZZ <target> execs=<n> crashes=<n> engine=afl edges=<found>/<total> seconds=<s>
# and fails if a target crashed: the inputs are in target/afl/<target>/default/crashes/ (copy
# each into tests/fuzz/regressions/<target>/ once fixed; cargo test replays them).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
target=${1:?usage: tests/afl.sh TARGET|all [SECONDS]}
seconds=${2:-600}

export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo afl --version >/dev/null 2>&1; then
  echo "==> installing cargo-afl from crates.io (it builds the AFL++ runtime)" >&2
  cargo install --locked cargo-afl >&2
fi
echo "==> cargo afl build --release (tests/afl)" >&2
# The same dependency versions as the main build: tests/afl/Cargo.lock starts as a copy of it.
[ -f tests/afl/Cargo.lock ] || cp Cargo.lock tests/afl/Cargo.lock
(cd tests/afl && cargo afl build --release) >&2
bin=$repo/tests/afl/target/release/sigvault-afl

if [ "$target" = all ]; then
  targets=$(sed -n 's/^    ("\([a-z0-9-]*\)", [a-z0-9_]*),$/\1/p' src/fuzz.rs)
else
  targets=$target
fi
crashed=0
for t in $targets; do
  [ -d "tests/fuzz/corpus/$t" ] || { echo "tests/afl.sh: no corpus for target '$t' (tests/fuzz/corpus/)" >&2; exit 2; }
  seeds=$repo/target/afl/seeds/$t out=$repo/target/afl/$t
  rm -rf "$seeds" "$out"; mkdir -p "$seeds"
  cp "tests/fuzz/corpus/$t"/* "$seeds/"
  if [ -d "tests/fuzz/regressions/$t" ]; then cp "tests/fuzz/regressions/$t"/* "$seeds/" 2>/dev/null || true; fi
  # AFL_SKIP_CPUFREQ, AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES, AFL_NO_AFFINITY: a shared VM has no fixed
  # CPU governor, core_pattern AFL may set or core of its own; none changes what is found.
  AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1 AFL_QUIET=1 \
    cargo afl fuzz -V "$seconds" -i "$seeds" -o "$out" -- "$bin" "$t" >"$repo/target/afl/$t.log" 2>&1 || {
      echo "tests/afl.sh: afl-fuzz failed on '$t' (target/afl/$t.log):" >&2; tail -n 20 "$repo/target/afl/$t.log" >&2; exit 1; }
  stats=$out/default/fuzzer_stats
  stat() { sed -n "s/^$1 *: *//p" "$stats"; }
  n_crash=$(stat saved_crashes)
  echo "FUZZ $t execs=$(stat execs_done) crashes=$n_crash engine=afl edges=$(stat edges_found)/$(stat total_edges) seconds=$(stat run_time)"
  [ "${n_crash:-0}" = 0 ] || crashed=1
done
[ $crashed = 0 ]
