# Sourced by .ci/run and .ci/demo: find ComfyUI and pick (or build) the Python environment.
#   COMFYUI_PATH  default: ~/comfy/ComfyUI when it exists (made by ../shared/comfyui/setup.sh), else the
#                 ComfyUI this pack sits in (ComfyUI/custom_nodes/<pack>)
#   DDE_PYTHON    the interpreter; default: ~/comfy/venv when ComfyUI is found (built with setup.sh when
#                 that script is beside this checkout), else a local .venv (with ComfyUI's requirements
#                 when ComfyUI is found)
# torch is pinned to the installed build (a constraints file), so pip never pulls another torch.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${COMFYUI_PATH:-}" ]; then
  if [ -f "$HOME/comfy/ComfyUI/main.py" ]; then
    export COMFYUI_PATH="$HOME/comfy/ComfyUI"
  elif [ "$(basename "$(dirname "$ROOT")")" = "custom_nodes" ] && [ -f "$ROOT/../../main.py" ]; then
    export COMFYUI_PATH="$(cd "$ROOT/../.." && pwd)"
  fi
fi
SETUP="$ROOT/../shared/comfyui/setup.sh"
LOCAL_VENV="$ROOT/.venv"
if [ -z "${DDE_PYTHON:-}" ]; then
  if [ -n "${COMFYUI_PATH:-}" ] && [ ! -x "$HOME/comfy/venv/bin/python" ] && [ -f "$SETUP" ]; then
    echo "[ci] ComfyUI found but no ~/comfy/venv: building it with $SETUP"
    bash "$SETUP" "$COMFYUI_PATH" "$COMFYUI_PATH" "$HOME/comfy/venv"
  fi
  if [ -n "${COMFYUI_PATH:-}" ] && [ -x "$HOME/comfy/venv/bin/python" ]; then
    DDE_PYTHON="$HOME/comfy/venv/bin/python"
  else
    if [ ! -x "$LOCAL_VENV/bin/python" ]; then
      echo "[ci] building $LOCAL_VENV"
      python3 -m venv "$LOCAL_VENV"
    fi
    DDE_PYTHON="$LOCAL_VENV/bin/python"
  fi
fi
export DDE_PYTHON
CONS="$(mktemp)"
"$DDE_PYTHON" - > "$CONS" <<'PY'
try:
    import torch
    print("torch==" + torch.__version__.split("+")[0])
except ImportError:
    print("torch==2.13.0")
PY
pip_q() { "$DDE_PYTHON" -m pip install -q --disable-pip-version-check -c "$CONS" "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
need() { "$DDE_PYTHON" -c "import $1" >/dev/null 2>&1; }
need torch || pip_q "torch==2.13.0"
for mod in numpy:numpy PIL:pillow einops:einops kornia:kornia; do need "${mod%%:*}" || pip_q "${mod##*:}"; done
if [ -n "${COMFYUI_PATH:-}" ] && ! need aiohttp; then
  echo "[ci] installing ComfyUI's requirements into $DDE_PYTHON's environment"
  pip_q -r "$COMFYUI_PATH/requirements.txt" requests
fi
