#!/usr/bin/env bash
# Installs what the hybridgrid-executors llm/mcp/cli tests run against, under a project-local
# prefix (default /opt/hybridgrid-test, override with HG_TEST_PREFIX). Idempotent: installs only
# what is missing. The tests look for everything there and fail naming this script when missing.
#
#   npm  ($PREFIX/npm/node_modules/.bin): node@22 (Node 22 for claude-code and the inspector),
#        @modelcontextprotocol/server-everything, @modelcontextprotocol/server-memory,
#        @modelcontextprotocol/inspector, @anthropic-ai/claude-code, opencode-ai
#   PyPI: mcp-server-time ($PREFIX/py-time/bin), aider-chat ($PREFIX/py-aider/bin)
set -euo pipefail

PREFIX=${HG_TEST_PREFIX:-/opt/hybridgrid-test}
NPM_DIR=$PREFIX/npm
PY_DIR=$PREFIX/py
log() { echo "ci-deps/llm: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for tool in npm python3 unshare ip; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required (apt-get install nodejs npm python3 python3-venv util-linux iproute2)"
done
mkdir -p "$NPM_DIR" "$PY_DIR" || die "cannot create $PREFIX"

# --- npm ---------------------------------------------------------------------------------------
NPM_PKGS=(
  "node@22"
  "@modelcontextprotocol/server-everything"
  "@modelcontextprotocol/server-memory"
  "@modelcontextprotocol/inspector"
  "@anthropic-ai/claude-code"
  "opencode-ai"
)
missing=()
for p in "${NPM_PKGS[@]}"; do
  name=${p%@22}
  [ -f "$NPM_DIR/node_modules/$name/package.json" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "npm install ${missing[*]}"
  [ -f "$NPM_DIR/package.json" ] || echo '{"name":"hybridgrid-test-deps","private":true}' > "$NPM_DIR/package.json"
  (cd "$NPM_DIR" && npm install --no-audit --no-fund --loglevel=error "${missing[@]}" >/dev/null) \
    || die "npm install ${missing[*]} failed"
fi
NODE="$NPM_DIR/node_modules/.bin/node"
[ -x "$NODE" ] || die "node@22 did not install a node binary at $NODE"
ver=$("$NODE" --version)
case "$ver" in v22.*|v23.*|v24.*) ;; *) die "node at $NODE is $ver, need >= 22.19";; esac
# The inspector's current versions need Node >= 22.19; on an older node npm picks 0.15.
insp=$("$NODE" -e "console.log(require('$NPM_DIR/node_modules/@modelcontextprotocol/inspector/package.json').version)")
case "$insp" in 0.1[0-5].*) log "inspector $insp is old (installed under Node < 22.19?): reinstalling with node 22";
  (cd "$NPM_DIR" && PATH="$NPM_DIR/node_modules/.bin:$PATH" npm install --no-audit --no-fund --loglevel=error "@modelcontextprotocol/inspector@latest" >/dev/null) || die "inspector reinstall failed";;
esac

# --- PyPI (one venv each: their dependency pins conflict) -------------------------------------
pip_tool() { # venv-name package executable
  local dir=$PREFIX/$1
  if [ ! -x "$dir/bin/python" ]; then
    python3 -m venv "$dir" || die "python3 -m venv $dir failed (apt-get install python3-venv)"
  fi
  if [ ! -x "$dir/bin/$3" ]; then
    log "pip install $2"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$2" >/dev/null 2>"$dir/pip.log" \
      || { tail -5 "$dir/pip.log" >&2; die "pip install $2 failed"; }
  fi
}
pip_tool py-time mcp-server-time mcp-server-time
pip_tool py-aider aider-chat aider
log "ok ($PREFIX)"
