#!/usr/bin/env bash
# Train the shipped tumsyn-tiny checkpoint from scratch, on a simulated cohort, on the CPU.
#
#   bash scripts/train_release.sh        # about 45 minutes on 2 CPU cores
#
# 1. simulate 24 subjects scanned with the 25 protocols of the packaged library (1.5/3/7 T, four
#    vendors, all seven contrasts) on a common 2 mm grid, so every pair of a subject's images is
#    co-registered;
# 2. stage 1: bmlip-tiny, contrastive text-image pre-training (configs/bmlip-tiny.yaml);
# 3. stage 2: tumsyn-tiny on the frozen stage-1 text encoder (configs/synth-tiny.yaml);
# 4. plot the training curves (docs/figures/training_curves.png);
# 5. bundle text tower + network into the shipped checkpoint (float16, with training coverage).
# Outputs: runs/bmlip-tiny/ and runs/synth-tiny/ (model.safetensors, metrics.csv).
set -euo pipefail
cd "$(dirname "$0")/.."
tumsyn=.venv/bin/tumsyn

if [ ! -f data/sim/participants.tsv ]; then
    rm -rf data/sim
    "$tumsyn" simulate data/sim --subjects 24 --seed 1 --protocols library --voxel-size 2 \
        --enhancing-fraction 0.3
fi
"$tumsyn" train-text configs/bmlip-tiny.yaml
"$tumsyn" train configs/synth-tiny.yaml
.venv/bin/python scripts/plot_training.py runs/bmlip-tiny/metrics.csv runs/synth-tiny/metrics.csv \
    docs/figures/training_curves.png
.venv/bin/python scripts/package_release.py runs/bmlip-tiny/model.safetensors \
    runs/synth-tiny/model.safetensors src/tumsyn/checkpoints/tumsyn-tiny.safetensors
