#!/bin/sh
# Installs tls-tunnel: Deno (when missing), the single-file bundle, and a `tls-tunnel` launcher that runs
# the bundle with the narrow permissions of `deno task server` / `deno task client`.
#
#   sh scripts/install.sh [--prefix DIR] [--bundle FILE|URL] [--deno PATH]
#   curl -fsSL https://raw.githubusercontent.com/tls-tunnel/tls-tunnel/main/scripts/install.sh | sh
#
# --prefix  where to install: PREFIX/bin/tls-tunnel and PREFIX/lib/tls-tunnel/ (default ~/.local, or
#           /usr/local for root).
# --bundle  a bundle to install (a file, or an http(s) URL) instead of building one. Without it, a
#           checkout builds its own (`deno bundle`, as `deno task bundle`); a piped script downloads the
#           latest release's tls-tunnel.js (TLS_TUNNEL_RELEASE_URL names another release folder).
# --deno    the Deno to run with. Default: `deno` on PATH, else the pinned Deno (DENO_VERSION) installed in
#           PREFIX/lib/tls-tunnel/ from npm (`npm i -g --prefix …`) or by Deno's official installer.
set -eu

DENO_VERSION="2.9.6"
RELEASE_URL="${TLS_TUNNEL_RELEASE_URL:-https://github.com/tls-tunnel/tls-tunnel/releases/latest/download}"

log() { printf '[install] %s\n' "$*" >&2; }
fail() { printf '[install] error: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" = "0" ]; then prefix="/usr/local"; else prefix="${HOME:?HOME is not set}/.local"; fi
bundle_source=""
deno=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --prefix) [ "$#" -ge 2 ] || fail "--prefix needs a folder"; prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    --bundle) [ "$#" -ge 2 ] || fail "--bundle needs a file or URL"; bundle_source="$2"; shift 2 ;;
    --bundle=*) bundle_source="${1#--bundle=}"; shift ;;
    --deno) [ "$#" -ge 2 ] || fail "--deno needs a path"; deno="$2"; shift 2 ;;
    --deno=*) deno="${1#--deno=}"; shift ;;
    -h|--help) sed -n '2,14p' "$0" 2>/dev/null | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) fail "unknown argument '$1' (see --help)" ;;
  esac
done
case "$prefix" in
  /*) ;;
  *) prefix="$(pwd)/$prefix" ;;
esac
bin_dir="$prefix/bin"
lib_dir="$prefix/lib/tls-tunnel"
mkdir -p "$bin_dir" "$lib_dir"

# The folder of a checkout this script runs from, if any (empty when piped into sh).
source_dir=""
case "$0" in
  */install.sh)
    candidate="$(cd "$(dirname "$0")/.." 2>/dev/null && pwd)" || candidate=""
    if [ -n "$candidate" ] && [ -f "$candidate/main.ts" ] && [ -f "$candidate/deno.json" ]; then
      source_dir="$candidate"
    fi
    ;;
esac

download() { # URL FILE
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 2 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    fail "neither curl nor wget is installed: cannot download $1"
  fi
}

# --- Deno ----------------------------------------------------------------------------------------------
if [ -z "$deno" ] && command -v deno >/dev/null 2>&1; then deno="$(command -v deno)"; fi
if [ -z "$deno" ] && [ -x "$lib_dir/deno/bin/deno" ]; then deno="$lib_dir/deno/bin/deno"; fi
if [ -z "$deno" ] && command -v npm >/dev/null 2>&1; then
  log "installing deno@$DENO_VERSION from npm into $lib_dir/npm"
  npm install -g --prefix "$lib_dir/npm" --no-audit --no-fund --loglevel=error "deno@$DENO_VERSION" >&2
  for candidate in "$lib_dir/npm/lib/node_modules/deno/deno" \
    "$lib_dir"/npm/lib/node_modules/deno/node_modules/@deno/*/deno \
    "$lib_dir"/npm/lib/node_modules/@deno/*/deno; do
    if [ -x "$candidate" ] && "$candidate" --version >/dev/null 2>&1; then deno="$candidate"; break; fi
  done
  [ -n "$deno" ] || log "the npm package installed no Deno that runs here; trying the official installer"
fi
if [ -z "$deno" ]; then
  log "installing Deno v$DENO_VERSION with the official installer into $lib_dir/deno"
  installer="$lib_dir/deno-install.sh"
  download "https://deno.land/install.sh" "$installer"
  DENO_INSTALL="$lib_dir/deno" sh "$installer" -y --no-modify-path "v$DENO_VERSION" >&2
  rm -f "$installer"
  deno="$lib_dir/deno/bin/deno"
fi
case "$deno" in
  /*) ;;
  *) deno="$(cd "$(dirname "$deno")" && pwd)/$(basename "$deno")" ;;
esac
"$deno" --version >/dev/null 2>&1 || fail "$deno does not run"
log "using $("$deno" --version | head -n 1) at $deno"

# --- The bundle ----------------------------------------------------------------------------------------
bundle="$lib_dir/tls-tunnel.js"
# deno bundle reads the output's extension: keep ".js" (with another one, CommonJS packages such as tslib are
# wrapped for a different module mode and the certificate code fails at run time).
staged="$lib_dir/tls-tunnel.new-$$.js"
trap 'rm -f "$staged"' EXIT
if [ -n "$bundle_source" ]; then
  case "$bundle_source" in
    http://*|https://*) log "downloading $bundle_source"; download "$bundle_source" "$staged" ;;
    *) [ -f "$bundle_source" ] || fail "--bundle $bundle_source is not a file"; cp "$bundle_source" "$staged" ;;
  esac
elif [ -n "$source_dir" ]; then
  log "building the bundle from $source_dir"
  # The arguments of `deno task bundle` (scripts/compile_all.ts bundleArgs), into the prefix.
  (cd "$source_dir" && "$deno" bundle --platform deno --minify -o "$staged" main.ts --quiet)
else
  log "downloading the latest release's bundle from $RELEASE_URL"
  download "$RELEASE_URL/tls-tunnel.js" "$staged"
  if download "$RELEASE_URL/SHA256SUMS" "$staged.sums" 2>/dev/null; then
    expected="$(grep ' tls-tunnel.js$' "$staged.sums" | cut -d ' ' -f 1)"
    rm -f "$staged.sums"
    if command -v sha256sum >/dev/null 2>&1; then
      actual="$(sha256sum "$staged" | cut -d ' ' -f 1)"
    else
      actual="$(shasum -a 256 "$staged" | cut -d ' ' -f 1)"
    fi
    [ -n "$expected" ] && [ "$expected" = "$actual" ] || fail "tls-tunnel.js does not match SHA256SUMS"
  fi
fi
mv -f "$staged" "$bundle"
chmod 0644 "$bundle"

# --- The launcher --------------------------------------------------------------------------------------
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
launcher="$bin_dir/tls-tunnel"
cat >"$launcher.new.$$" <<EOF
#!/bin/sh
# tls-tunnel launcher, written by scripts/install.sh: runs the bundle with Deno and the narrow permissions
# of \`deno task server\` / \`deno task client\`; the commands that write files (server's state directory,
# cert, template, register) get --allow-write, and register/unregister may run systemctl.
DENO=$(quote "$deno")
BUNDLE=$(quote "$bundle")
TLS_TUNNEL_LAUNCHER=$(quote "$launcher")
export TLS_TUNNEL_LAUNCHER
EOF
cat >>"$launcher.new.$$" <<'EOF'
# The command is the first argument that is not a global option (--log-format takes a value).
command=""
skip=0
for arg in "$@"; do
  if [ "$skip" = 1 ]; then skip=0; continue; fi
  case "$arg" in
    --log-format) skip=1 ;;
    -*) ;;
    *) command="$arg"; break ;;
  esac
done
permissions="--allow-net --allow-read --allow-env --allow-sys=hostname --allow-ffi"
case "$command" in
  # A server without a config file keeps its certificate and keys in its state directory.
  server|cert|template) permissions="$permissions --allow-write" ;;
  register|unregister) permissions="$permissions --allow-write --allow-run=systemctl" ;;
esac
# --no-config: a deno.json in the current folder must not change how the bundle runs.
# shellcheck disable=SC2086 # the permissions are words without spaces, split on purpose
exec "$DENO" run --no-config --no-prompt $permissions "$BUNDLE" "$@"
EOF
chmod 0755 "$launcher.new.$$"
mv -f "$launcher.new.$$" "$launcher"
log "installed $launcher"
"$launcher" version >&2 || fail "the launcher does not run: $launcher version failed"

case ":${PATH:-}:" in
  *":$bin_dir:"*) ;;
  *) log "add $bin_dir to PATH, e.g. echo 'export PATH=\"$bin_dir:\$PATH\"' >> ~/.profile" ;;
esac
log "done: try \`tls-tunnel demo\`"
