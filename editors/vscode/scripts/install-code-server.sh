#!/usr/bin/env bash
# Install code-server 4.100.3 (VS Code 1.100.3 with a Node extension host) from npm, offline
# apart from the npm registry, into a cache directory, and print the path of its
# node_modules/code-server on stdout. Progress goes to stderr.
#
#   CODE_SERVER=$(editors/vscode/scripts/install-code-server.sh)
#   node "$CODE_SERVER/out/node/entry.js" --help
#
# Idempotent: a stamp file is written only after every step succeeded; without it the
# directory is wiped and the install starts again, so a half-finished install is redone.
# Concurrent runs are serialised with a lock. The cache lives in
# ${SESSIONLSP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sessionlsp}/code-server-4.100.3.
#
# A plain `npm install code-server` does not work here: @vscode/ripgrep downloads from GitHub
# (we link Debian's rg instead), kerberos needs the krb5 headers, and npm 11 as root rejects
# the package's unsafe-perm lifecycle scripts (we install with --ignore-scripts and rebuild
# the native modules ourselves).
set -euo pipefail

VERSION=4.100.3
cache_root="${SESSIONLSP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sessionlsp}"
dir="$cache_root/code-server-$VERSION"
stamp="$dir/.installed"
pkg="$dir/node_modules/code-server"

log() { printf 'install-code-server: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ -f "$stamp" ] && [ -f "$pkg/out/node/entry.js" ]; then
  printf '%s\n' "$pkg"
  exit 0
fi

# Prerequisites (the repo's ./dev installs the apt packages: libkrb5-dev ripgrep chromium).
missing=()
command -v node >/dev/null || missing+=("node (Node.js 20)")
command -v npm >/dev/null || missing+=("npm")
command -v rg >/dev/null || missing+=("ripgrep (apt-get install ripgrep)")
command -v krb5-config >/dev/null || [ -f /usr/include/gssapi/gssapi.h ] \
  || missing+=("Kerberos headers (apt-get install libkrb5-dev)")
command -v make >/dev/null && command -v g++ >/dev/null \
  || missing+=("a C++ toolchain (apt-get install build-essential)")
command -v python3 >/dev/null || missing+=("python3 (node-gyp needs it)")
if [ ${#missing[@]} -gt 0 ]; then
  die "missing prerequisites: ${missing[*]}"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" = 20 ] \
  || die "code-server $VERSION needs Node 20 (its engines field); found $(node --version)"

# Native modules are built against the running node's headers, which the nodesource and
# Debian packages ship; without them node-gyp would try to download them from nodejs.org.
node_prefix=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
if [ -f "$node_prefix/include/node/node.h" ]; then
  export npm_config_nodedir="$node_prefix"
fi
export npm_config_yes=true npm_config_fund=false npm_config_audit=false \
  npm_config_update_notifier=false npm_config_loglevel=warn
export JOBS=max # node-gyp compiles each native module with every core

mkdir -p "$cache_root"
exec 9>"$cache_root/code-server-$VERSION.lock"
flock 9
if [ -f "$stamp" ] && [ -f "$pkg/out/node/entry.js" ]; then  # another run finished it
  printf '%s\n' "$pkg"
  exit 0
fi

start=$SECONDS
log "installing code-server $VERSION into $dir"
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"
printf '{"name":"sessionlsp-code-server","private":true}\n' >package.json

# Every npm step writes only to stderr: stdout carries the path alone.
run() { log "+ $*"; "$@" >&2; }

run npm install --no-save --ignore-scripts "code-server@$VERSION"
run npm rebuild argon2

cd "$pkg/lib/vscode"
run npm install --omit=dev --ignore-scripts
mkdir -p node_modules/@vscode/ripgrep/bin
ln -sf "$(command -v rg)" node_modules/@vscode/ripgrep/bin/rg
run npm rebuild
ln -sfn node_modules node_modules.asar
(cd bin/remote-cli && ln -sf code-linux.sh code-server)
(cd bin/helpers && ln -sf browser-linux.sh browser.sh)

cd extensions
run npm install --omit=dev

cd "$pkg"
node -e 'require("./lib/vscode/node_modules/@vscode/spdlog"); require("./lib/vscode/node_modules/node-pty")' \
  || die "native modules did not load after the rebuild"
[ -f out/node/entry.js ] || die "out/node/entry.js missing after the install"

date -u +%Y-%m-%dT%H:%M:%SZ >"$stamp"
log "done in $((SECONDS - start)) s"
printf '%s\n' "$pkg"
