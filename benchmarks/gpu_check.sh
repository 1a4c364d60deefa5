#!/usr/bin/env bash
# avae's GPU check in one command, at most 8 minutes on one GPU (benchmarks/gpu_check.py says what it does):
#
#   OUT=/path/to/out bash benchmarks/gpu_check.sh              # writes $OUT/gpu_check.json, gpu_tests.{log,xml}
#   OUT=/tmp/gpuout bash benchmarks/gpu_check.sh --dry-run     # every size shrunk: the script checked on a CPU
#
# Needs Python with torch (a CUDA build for the real check) and avae's dependencies; nothing is downloaded.
# avae is imported from this checkout's src/ (installed or not); where that fails it is installed here
# without dependencies or network. GPU_CHECK_LIMIT_S (default 480) is the hard limit in seconds: the
# Python gets a budget 30 s under it, and the JSON it rewrites after every run survives a timeout.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu_check}"
PY="${PYTHON:-python3}"
LIMIT="${GPU_CHECK_LIMIT_S:-480}"
mkdir -p "$OUT"
export OUT PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

import_error() { "$PY" -c "import avae.trainer, avae.evaluation" 2>&1 | tail -n 1; }
err="$(import_error)"
if [ -n "$err" ]; then
  echo "avae does not import from src/ ($err); installing it here without dependencies" >&2
  "$PY" -m pip install --no-deps --no-build-isolation --no-index -e . >"$OUT/pip.log" 2>&1 || true
  err="$(import_error)"
fi
if [ -n "$err" ]; then
  echo "avae does not import: $err (see $OUT/pip.log); install its dependencies first" >&2
  printf '{"error": "avae does not import", "detail": %s}\n' "$("$PY" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$err")" \
    >"$OUT/gpu_check.json"
  exit 3
fi
"$PY" -c "import avae, torch; print('avae from', avae.__file__, '| torch', torch.__version__, '| CUDA', torch.cuda.is_available())"
if command -v nvidia-smi >/dev/null; then nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true; fi

timeout --signal=TERM --kill-after=20 "$LIMIT" "$PY" benchmarks/gpu_check.py --out "$OUT" --budget $((LIMIT - 30)) "$@"
rc=$?
[ "$rc" = 124 ] && echo "gpu_check.py reached the limit of $LIMIT s; $OUT/gpu_check.json holds what it measured" >&2
exit "$rc"
