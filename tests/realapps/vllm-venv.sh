#!/usr/bin/env bash
# Builds, once, a small virtual environment that holds vLLM 0.33.0's real `vllm serve` argument
# parser, for tests/realapps/vllm_argv.py, and prints its python on stdout (progress: stderr).
#
#   bash tests/realapps/vllm-venv.sh            # -> /var/cache/mmstack-apps/vllm-0.33.0/bin/python
#   MMSTACK_APP_CACHE=/tmp/apps bash tests/realapps/vllm-venv.sh
#
# Not a working vLLM: only what the parser's import chain needs. `vllm==0.33.0` is installed
# with --no-deps (its full dependency set pulls a multi-GB CUDA torch 2.14.0), next to the
# machine's CPU build of torch 2.13.0 (the wheel on this kind of machine's disk, see
# /work/.library/env/machines/python.md) and the exact packages below, all --no-deps, so the
# result is the same on every run. The list was found by trial: each entry is imported while
# the parser is built (vllm/__init__ -> env_override imports torch; cli/serve.py ->
# launchers/api_server -> fastapi, openai, aiohttp, ...; config defaults -> v1.executor ->
# xgrammar, ...). Each satisfies vLLM 0.33.0's own Requires-Dist range.
# vLLM's compiled kernels (CUDA .so files, the vllm-rs binary, bundled CUTLASS headers; ~750 MB)
# and torch's C++ headers and test binaries are deleted after the install: nothing on the
# parser's path loads them (on a machine with no CUDA vLLM's kernels could not load anyway).
#
# Rebuilt only when the stamp (vLLM version, base Python version, this script's sha256) changes.
# A flock serialises concurrent builds; each build goes into a temporary folder beside the target
# and is renamed into place only once a smoke test has parsed an argv, so a killed build never
# leaves a half venv. Cold build: ~2.5 min on 2 cores with a cold pip cache (336 MB vLLM wheel);
# the venv is ~1.2 GB. Warm (stamp matches): instant.
set -euo pipefail

VLLM_VERSION=0.33.0
TORCH_VERSION=2.13.0
PY=${MMSTACK_APP_PYTHON:-python3.11}

# Exact versions; each inside vllm 0.33.0's Requires-Dist range where it names one.
PINS=(
  aiohappyeyeballs==2.7.1 aiohttp==3.14.5 aiosignal==1.4.0 annotated-doc==0.0.7
  annotated-types==0.8.0 anyio==4.16.0 apache-tvm-ffi==0.1.15.post2 attrs==26.1.0
  cachetools==8.0.2 cbor2==6.3.0 certifi==2026.10.19.post1 charset-normalizer==3.5.3
  click==8.5.1 cloudpickle==3.1.3 dnspython==2.9.2 email-validator==2.4.0 fastapi==0.136.3
  filelock==4.3.1 frozenlist==1.8.0 h11==0.16.0 httpcore2==2.16.2 httpx2==2.16.2
  huggingface_hub==2.4.0 idna==3.20 Jinja2==3.1.6 llguidance==1.7.6 MarkupSafe==3.0.4
  mpmath==1.3.0 msgspec==0.23.0
  multidict==7.2.1 networkx==3.6.1 numpy==2.4.6 openai==3.57.0 orjson==3.13.0
  oss-harmony==0.0.11 packaging==26.4 partial-json-parser==0.2.1.1.post7 pillow==13.0.0
  prometheus_client==0.26.0 propcache==0.5.4 psutil==7.2.2 py-cpuinfo==9.0.0 pybase64==1.5.1
  pydantic==2.14.4 pydantic-extra-types==2.11.1 pydantic_core==2.50.5 python-multipart==0.0.34
  PyYAML==6.0.4 pyzmq==27.3.0 regex==2026.11.19 requests==2.34.2 safetensors==0.8.0
  sniffio==1.3.1 starlette==1.10.0 sympy==1.14.0 tokenizers==0.23.3 tqdm==4.70.1
  transformers==5.20.2 truststore==0.10.5 typing-inspection==0.4.5 typing_extensions==4.16.0
  urllib3==2.8.0 uvicorn==0.54.0 uvloop==0.23.0 watchfiles==1.3.0 xgrammar==0.2.8 yarl==1.25.1
)

log() { echo "[vllm-venv] $*" >&2; }
die() { echo "[vllm-venv] FAILED: $*" >&2; exit 1; }

SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
CACHE=${MMSTACK_APP_CACHE:-/var/cache/mmstack-apps}
VENV=$CACHE/vllm-$VLLM_VERSION
STAMP_FILE=.mmstack-stamp
want=$( { echo "vllm $VLLM_VERSION"; "$PY" --version 2>&1 || true; sha256sum < "$SELF"; } |
  sha256sum | cut -c1-64)

ready() { [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/$STAMP_FILE" 2>/dev/null)" = "$want" ]; }

if ready; then echo "$VENV/bin/python"; exit 0; fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.vllm-$VLLM_VERSION.lock"
log "waiting for the build lock ($CACHE/.vllm-$VLLM_VERSION.lock)"
flock -w 3600 9 || die "could not take the build lock within an hour"
if ready; then echo "$VENV/bin/python"; exit 0; fi   # another process built it meanwhile

command -v "$PY" >/dev/null || die "$PY not found (set MMSTACK_APP_PYTHON)"
# Leftovers of killed builds: safe to remove, the lock is ours.
rm -rf "$CACHE/.vllm-$VLLM_VERSION.build."* "$CACHE/.vllm-$VLLM_VERSION.old."*
tmp=$(mktemp -d "$CACHE/.vllm-$VLLM_VERSION.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
t0=$SECONDS

log "building vllm $VLLM_VERSION parser venv in $tmp"
chmod 755 "$tmp"
"$PY" -m venv --prompt "vllm-$VLLM_VERSION" "$tmp"
pip=("$tmp/bin/python" -m pip --disable-pip-version-check --no-input)
# (grep: this machine's pip config names local index folders that do not exist for most names)
"${pip[@]}" install -q --no-deps --only-binary=:all: \
  "vllm==$VLLM_VERSION" "torch==$TORCH_VERSION" "${PINS[@]}" 2>&1 |
  { grep -v "^WARNING: Location 'file:.*' is ignored" || true; } >&2
"$tmp/bin/python" - <<'EOF' >&2 || die "torch in the venv is not a CPU build (no 2.13.0+cpu wheel?)"
import torch, sys
print("torch", torch.__version__)
sys.exit(0 if torch.__version__.endswith("+cpu") else 1)
EOF

site=$("$tmp/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
log "pruning compiled code the parser never loads (vllm: $(du -sh "$site/vllm" | cut -f1))"
find "$site/vllm" -name '*.so' -delete
rm -f "$site/vllm/vllm-rs"
find "$site/vllm/third_party" -depth -type d -name include -exec rm -rf {} + 2>/dev/null || true
rm -rf "$tmp/bin/vllm-rs"
# torch's C++ headers, C++ test binaries and tools: no Python import reads them (~190 MB).
rm -rf "$site/torch/include" "$site/torch/test"
find "$site/torch/bin" -type f ! -name torch_shm_manager -delete

log "smoke test: build the serve parser and parse one argv"
echo '["facebook/opt-125m", "--tensor-parallel-size", "2"]' |
  env -i PATH=/usr/bin:/bin HOME="$tmp/.smoke-home" "$tmp/bin/python" -c '
import json, os, sys
os.environ["VLLM_TARGET_DEVICE"] = "cpu"
sys.stdout = sys.stderr
from vllm.entrypoints.cli.serve import ServeSubcommand
from vllm.utils.argparse_utils import FlexibleArgumentParser
p = FlexibleArgumentParser(prog="vllm")
ServeSubcommand().subparser_init(p.add_subparsers(dest="subparser"))
a = p.parse_args(["serve", *json.load(sys.stdin)])
assert a.model_tag == "facebook/opt-125m" and a.tensor_parallel_size == 2, vars(a)
print("parser ok")
' >&2 || die "smoke test failed"
rm -rf "$tmp/.smoke-home"

# Scripts written by pip carry $tmp in their #! line: point them at the final place.
grep -rlI --null "$tmp" "$tmp/bin" | xargs -0 -r sed -i "s#$tmp#$VENV#g"
echo "$want" > "$tmp/$STAMP_FILE"
if [ -e "$VENV" ]; then
  old=$(mktemp -d "$CACHE/.vllm-$VLLM_VERSION.old.XXXXXX")
  mv "$VENV" "$old/venv"
fi
mv "$tmp" "$VENV"
trap - EXIT
if [ -n "${old:-}" ]; then rm -rf "$old"; fi
log "ready in $((SECONDS - t0))s, $(du -sh "$VENV" | cut -f1): $VENV"
echo "$VENV/bin/python"
