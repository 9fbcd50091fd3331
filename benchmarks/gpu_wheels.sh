#!/usr/bin/env bash
# Fetch, on this machine (where pip reaches the package registries), the wheels that the lent GPU
# machine lacks for `benchmarks/gpu_check.py`: the reference packages the tests compare with. That
# machine has Python 3.12 with torch, torchmetrics, lightning, pytest, xdist, numpy, scipy, pillow,
# matplotlib and scikit-image, and no network. The wheels land in `.whl/` (git-ignored, ~4 MB) and
# travel with `carry: [".whl"]`; see the GPU paragraph of `benchmarks/README.md` for the one call.
set -euo pipefail
cd "$(dirname "$0")/.."
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl \
    pycocotools==2.0.11 faster-coco-eval==1.8.0 panopticapi-lite==0.2.0 hotcoco==1.3.0 platformdirs
ls -l .whl
