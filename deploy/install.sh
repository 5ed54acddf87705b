#!/usr/bin/env bash
# Installs the engine with its man page, shell completions, systemd unit
# and an example config:
#
#   deploy/install.sh [DESTDIR]
#
# builds the release binaries (cargo; or takes engine and flowspan-docs
# from FLOWSPAN_BIN_DIR), then installs under DESTDIR (default
# /, as root) into /usr/local/bin, /usr/local/share/man/man1, the bash, zsh
# and fish completion directories, /etc/systemd/system and /etc/flowspan
# (an existing config.yaml is kept). Then: systemctl daemon-reload &&
# systemctl enable --now flowspan.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-/}
bin=${FLOWSPAN_BIN_DIR:-}
if [ -z "$bin" ]; then
  cargo build --release --locked -p flowspan-cli --bins
  bin=target/release
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin/flowspan-docs" "$work" 2>/dev/null
install -D -m 0755 "$bin/engine" "$dest/usr/local/bin/engine"
install -D -m 0644 "$work/engine.1" "$dest/usr/local/share/man/man1/engine.1"
install -D -m 0644 "$work/engine.bash" "$dest/usr/share/bash-completion/completions/engine"
install -D -m 0644 "$work/_engine" "$dest/usr/share/zsh/vendor-completions/_engine"
install -D -m 0644 "$work/engine.fish" "$dest/usr/share/fish/vendor_completions.d/engine.fish"
install -D -m 0644 deploy/systemd/flowspan.service "$dest/etc/systemd/system/flowspan.service"
if [ ! -e "$dest/etc/flowspan/config.yaml" ]; then
  install -D -m 0640 deploy/config.yaml "$dest/etc/flowspan/config.yaml"
fi
echo "installed under $dest: usr/local/bin/engine, its man page and completions, etc/systemd/system/flowspan.service, etc/flowspan/config.yaml"
