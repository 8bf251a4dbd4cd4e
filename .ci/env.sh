# Sourced by .ci/run and .ci/demo: pick (or build) the Python environment and find ComfyUI.
#   COMFYUI_PATH  defaults to ~/comfy/ComfyUI when that exists (made by ../shared/comfyui/setup.sh)
#   DDE_PYTHON    the interpreter to use; default: ComfyUI's venv (~/comfy/venv) when ComfyUI is
#                 found, else a local .venv with the CPU torch and the pack's requirements.
# torch is pinned to the build already installed (constraints file) so pip never pulls another.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${COMFYUI_PATH:-}" ] && [ -f "$HOME/comfy/ComfyUI/main.py" ]; then
  export COMFYUI_PATH="$HOME/comfy/ComfyUI"
fi
SETUP="$ROOT/../shared/comfyui/setup.sh"
if [ -z "${DDE_PYTHON:-}" ]; then
  if [ -n "${COMFYUI_PATH:-}" ]; then
    if [ ! -x "$HOME/comfy/venv/bin/python" ] && [ -f "$SETUP" ]; then
      echo "[ci] ComfyUI found but no ~/comfy/venv: building it with $SETUP"
      bash "$SETUP" "$COMFYUI_PATH" "$COMFYUI_PATH" "$HOME/comfy/venv"
    fi
    DDE_PYTHON="$HOME/comfy/venv/bin/python"
  fi
  if [ -z "${DDE_PYTHON:-}" ] || [ ! -x "$DDE_PYTHON" ]; then
    if [ ! -x "$ROOT/.venv/bin/python" ]; then
      echo "[ci] building $ROOT/.venv (CPU torch + requirements)"
      python3 -m venv "$ROOT/.venv"
    fi
    DDE_PYTHON="$ROOT/.venv/bin/python"
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
