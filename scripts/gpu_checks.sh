#!/usr/bin/env bash
# The checks only a GPU can make (docs/gpu.md), as one prepared run on a machine with CUDA.
#
#   scripts/gpu_checks.sh [all|tests|bench|bench-gpu|gpu|wheels]     (default: all)
#
#   tests      .venv/bin/python -m pytest -m slow -q tests/test_slow.py   (CUDA synthesis, fp32
#              and bf16 against the CPU; tumsyn synthesize --device cuda; synthesize-bids under
#              torchrun; a few bf16 training steps of the base configurations; and the paper-size
#              CPU checks)
#   bench      .venv/bin/python benchmarks/bench_synthesize.py   (every row; with CUDA it adds
#              official-synth and tumsyn-base on a whole brain in bf16)
#   bench-gpu  only those two whole-brain GPU rows (when the full benchmark does not fit a run)
#   gpu        what needs the GPU and nothing else, for one short device run: the slow tests
#              without the paper-size CPU checks, then bench-gpu
#   all        tests, then bench
#   wheels     (on a machine with pip access, not the GPU one) download into .whl/ the packages
#              that the project's GPU machine lacks, at the versions of this .venv
#
# Outputs go to $OUT (the device tool's folder) or else out/gpu-checks/: env.txt (GPU, torch),
# pytest.log and pytest.xml (JUnit, with each test's measured properties), bench.log and the
# benchmark's JSON. Exits non-zero if any step failed, after running the others.
#
# Python: .venv if its torch sees a GPU; else a python3 whose torch does (the project's device
# machine: no network, CUDA torch preinstalled), with tumsyn from src/ and the missing packages
# installed from wheels in $WHEELS (default .whl/); else `make setup`. Without a GPU it stops:
# the CUDA tests would only skip.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1

step=${1:-all}
out=${OUT:-out/gpu-checks}
wheels=${WHEELS:-.whl}
# What the GPU machine's image lacks of pyproject's dependencies (and their own needs).
missing_packages="nibabel pydicom ftfy wcwidth pydantic pydantic-core annotated-types \
typing-inspection monai nilearn"

has_cuda() {  # has_cuda PYTHON: whether that interpreter's torch sees a GPU
    "$1" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null
}

choose_python() {
    if [ -x .venv/bin/python ] && has_cuda .venv/bin/python \
        && .venv/bin/python -c "import tumsyn" 2>/dev/null; then
        py=.venv/bin/python
        return
    fi
    if command -v python3 >/dev/null && has_cuda python3; then
        local site=/tmp/tumsyn-site
        if compgen -G "$wheels/*.whl" >/dev/null; then
            python3 -m pip install -q --no-index --no-deps --no-compile --upgrade \
                --target "$site" "$wheels"/*.whl || return 1
        fi
        export PYTHONPATH="$PWD/src:$site${PYTHONPATH:+:$PYTHONPATH}"
        if python3 -c "import tumsyn.cli, tumsyn.simulate, nibabel, monai, nilearn, pydantic"; then
            py=python3
            return
        fi
        echo "gpu_checks: python3 has a CUDA torch but lacks packages; carry them as wheels" \
            "(scripts/gpu_checks.sh wheels, docs/gpu.md)" >&2
        return 1
    fi
    make setup || return 1
    py=.venv/bin/python
    if ! has_cuda "$py"; then
        echo "gpu_checks: torch in $py sees no CUDA GPU; install a CUDA build of torch into" \
            ".venv (README) or run this on a GPU machine" >&2
        return 1
    fi
}

download_wheels() {
    local pins
    pins=$(.venv/bin/python -m pip freeze | grep -iE "^($(echo "$missing_packages" \
        | tr ' ' '\n' | sed 's/-/[-_]/g' | paste -sd '|'))==") || return 1
    mkdir -p "$wheels"
    # shellcheck disable=SC2086  # one argument per pin
    .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$wheels" $pins
}

record_environment() {
    {
        nvidia-smi 2>&1 || echo "no nvidia-smi"
        "$py" -c "import platform, torch; print('python', platform.python_version(), 'torch',
    torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count())"
    } >"$out/env.txt"
    cat "$out/env.txt"
}

run_tests() {  # run_tests [PYTEST ARGS...]: the slow tests all live in tests/test_slow.py, and
    # collecting only that file spares the GPU machine the web app's packages (fastapi)
    "$py" -m pytest -m slow -q -o junit_family=legacy --junitxml "$out/pytest.xml" "$@" \
        tests/test_slow.py 2>&1 | tee "$out/pytest.log"
}

run_bench() {
    "$py" benchmarks/bench_synthesize.py "$@" 2>&1 | tee "$out/bench.log" || return 1
    cp benchmarks/results/synthesize.json benchmarks/results/synthesize_work.json "$out/"
}

run_gpu_bench() {  # the benchmark's own child cases: one JSON line each (seconds, peak RSS)
    (
        set -e
        for config in official-synth tumsyn-base; do
            echo "$config, whole brain 182x218x182, bf16, 64^3 patches:"
            "$py" benchmarks/bench_synthesize.py --child "gpu-brain:$config"
        done
    ) 2>&1 | tee "$out/bench.log"
}

if [ "$step" = wheels ]; then
    download_wheels
    exit
fi
case "$step" in all | tests | bench | bench-gpu | gpu) ;; *)
    echo "usage: scripts/gpu_checks.sh [all|tests|bench|bench-gpu|gpu|wheels]" >&2
    exit 2
    ;;
esac
mkdir -p "$out"
choose_python || exit 1
record_environment
failed=0
if [ "$step" = all ] || [ "$step" = tests ]; then
    run_tests || failed=1
fi
if [ "$step" = all ] || [ "$step" = bench ]; then
    run_bench || failed=1
fi
if [ "$step" = gpu ]; then
    run_tests -k "not on_the_cpu" || failed=1
fi
if [ "$step" = bench-gpu ] || [ "$step" = gpu ]; then
    run_gpu_bench || failed=1
fi
exit "$failed"
