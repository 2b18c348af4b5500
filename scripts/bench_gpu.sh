#!/usr/bin/env bash
# The whole speed table on a GPU machine, from a fresh checkout:
#
#     bash scripts/bench_gpu.sh            # or: ENCODERS="tiny resnet18" SIZES="256x512" bash ...
#
# Uses the installed torch when it has CUDA, else tries `pip install torch==$TORCH_VERSION`;
# installs only what the benchmark imports (numpy, av, pillow; no Lightning, Hydra or W&B) and
# compiles the reader's C loops in place (pip, else gcc directly), so it also works where no
# package index can be reached and the Python packages are already there. Needs no data: the
# benchmark generates its 480p clip (moving objects, MPEG-4 GOP 12; about 2 MB) in a temporary
# folder. Prints, per network input size, ms per I-/P-frame and 480p fps for every variant in
# float32, bf16 autocast, channels_last and torch.compile, with the labels' agreement with
# float32, then fps for 1, 3 and 5 objects. Exit status 1 if a mode's labels disagree.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
ENCODERS=${ENCODERS:-"tiny resnet18 resnet50"}
SIZES=${SIZES:-"256x512 480x856"}          # network inputs: the paper's, and the full frame
MODES=${MODES:-"float32 bf16 channels_last compile"}
FRAMES=${FRAMES:-36}
VIDEO_SIZE=${VIDEO_SIZE:-480x854}
DEVICE=${DEVICE:-cuda}                     # DEVICE=cpu runs the same table on the CPU (tests do)

log() { echo "[bench_gpu] $*" >&2; }
has_cuda() { "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }

if [ "$DEVICE" = cuda ] && ! has_cuda; then
    log "no torch with CUDA here; installing torch==$TORCH_VERSION"
    "$PYTHON" -m pip install -q "torch==$TORCH_VERSION" || log "pip could not install torch"
    has_cuda || { log "torch.cuda.is_available() is False: no GPU, or no CUDA build of torch"; exit 1; }
fi

for module in numpy av PIL; do
    if ! "$PYTHON" -c "import $module" 2>/dev/null; then
        package=$([ "$module" = PIL ] && echo pillow || echo "$module")
        log "installing $package"
        "$PYTHON" -m pip install -q "$package"
    fi
done

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PYTHON" -c "import cvos.codec._kernels" 2>/dev/null; then
    log "compiling cvos/codec/_kernels.c"
    if ! "$PYTHON" -m pip install -q --no-deps -e . 2>/dev/null; then
        suffix=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
        include=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
        "${CC:-gcc}" -O3 -shared -fPIC -I"$include" cvos/codec/_kernels.c -o "cvos/codec/_kernels$suffix"
    fi
fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

status=0
objects=()
for size in $SIZES; do
    log "network input $size"
    # shellcheck disable=SC2086 # the lists are meant to split into words
    "$PYTHON" scripts/bench_model.py --device "$DEVICE" --encoders $ENCODERS --modes $MODES \
        --size "${size%x*}" "${size#*x}" --video-size "${VIDEO_SIZE%x*}" "${VIDEO_SIZE#*x}" \
        --frames "$FRAMES" ${objects[@]+"${objects[@]}"} || status=$?
    objects=(--skip-objects)  # the object counts once, at the first size
done
exit "$status"
