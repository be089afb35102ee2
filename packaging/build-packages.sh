#!/usr/bin/env bash
# Build sigvault's .deb and .rpm (README.md "Install on a VM").
#
#   packaging/build-packages.sh
#
# Release build, then `cargo deb` and `cargo generate-rpm` (installed with `cargo install --locked`
# from crates.io when missing). Metadata: [package.metadata.deb] and
# [package.metadata.generate-rpm] in Cargo.toml; maintainer scripts in packaging/deb and
# packaging/rpm; units in systemd/. Outputs (the last two lines printed):
#   target/debian/sigvault_<version>-1_<arch>.deb
#   target/generate-rpm/sigvault-<version>-1.<arch>.rpm
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build-packages.sh: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
# The versions this was written against; a newer one already installed is used as is.
CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1
if ! cargo deb --version >/dev/null 2>&1; then
  say "installing cargo-deb $CARGO_DEB_VERSION (cargo install --locked)"
  cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
fi
if ! cargo generate-rpm --version >/dev/null 2>&1; then
  say "installing cargo-generate-rpm $CARGO_GENERATE_RPM_VERSION (cargo install --locked)"
  cargo install --locked --quiet cargo-generate-rpm --version "$CARGO_GENERATE_RPM_VERSION"
fi
command -v strip >/dev/null || die "strip not found: apt-get install binutils"

say "cargo build --release"
cargo build --release --quiet --bin sigvault
# cargo-deb strips its copy itself; cargo-generate-rpm packages the file as it is. Stripped into
# a new file that then replaces the old by rename: the development stack may be running this very
# binary (README's first command, then the tests), and writing in place into a running executable
# fails with "Text file busy"; a rename leaves the running process its old file.
strip --strip-unneeded -o target/release/sigvault.stripped target/release/sigvault
mv -f target/release/sigvault.stripped target/release/sigvault

rm -rf target/debian target/generate-rpm
say "cargo deb"
deb=$(cargo deb --no-build --quiet)
say "cargo generate-rpm"
cargo generate-rpm
rpm_file=$(ls "$PWD"/target/generate-rpm/*.rpm)

[ -f "$deb" ] || die "cargo deb did not report its output"
echo "$deb"
echo "$rpm_file"
