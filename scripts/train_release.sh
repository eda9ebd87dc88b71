#!/usr/bin/env bash
# Train the model v2 candidate (tumsyn-v2) on the CPU, in resumable pieces: rerun the script after
# an interruption and every stage continues where it stopped. Not shipped: its runs so far lost
# grey/white contrast (docs/decisions.md, "Generated inputs alone do not train tumsyn-tiny").
#
#   bash scripts/train_release.sh        # hours on 2 CPU cores; see the README's model card
#
# 1. simulate 24 subjects scanned with the 25 protocols of the packaged library (1.5/3/7 T, four
#    vendors, all seven contrasts) on a common 2 mm grid, for stage 1;
# 2. stage 1: bmlip-tiny, contrastive text-image pre-training with each prompt's voxel size drawn
#    from 0.7-3 mm (configs/bmlip-v2.yaml);
# 3. stage 2: tumsyn-tiny on the frozen stage-1 text encoder, on samples generated on the fly from
#    virtual subjects: randomised inputs of any contrast and resolution, exact targets of the
#    library's protocols at 0.7-3 mm (configs/synth-v2.yaml);
# 4. plot the training curves (docs/figures/training_curves.png);
# 5. bundle text tower + network into the shipped checkpoint (float16, with training coverage).
# Outputs: runs/bmlip-v2/ and runs/synth-v2/ (model.safetensors, metrics.csv, state.pt).
# Model v1 (tumsyn-tiny, the shipped one; 2 mm cohort only) came from configs/bmlip-tiny.yaml and
# configs/synth-tiny.yaml: `scripts/train_release.sh` in a checkout of commit ba68cf4.
set -euo pipefail
cd "$(dirname "$0")/.."
tumsyn=.venv/bin/tumsyn

if [ ! -f data/sim-v2/participants.tsv ]; then
    rm -rf data/sim-v2
    "$tumsyn" simulate data/sim-v2 --subjects 24 --seed 1 --protocols library --voxel-size 2 \
        --enhancing-fraction 0.3
fi
train() {  # train COMMAND CONFIG RUN: start, or resume a stopped run (a finished one is kept)
    if [ -f "$3/state.pt" ]; then "$tumsyn" "$1" "$2" --resume; else "$tumsyn" "$1" "$2"; fi
}
train train-text configs/bmlip-v2.yaml runs/bmlip-v2
train train configs/synth-v2.yaml runs/synth-v2
.venv/bin/python scripts/plot_training.py runs/bmlip-v2/metrics.csv runs/synth-v2/metrics.csv \
    docs/figures/training_curves.png
.venv/bin/python scripts/package_release.py tumsyn-v2 runs/bmlip-v2/model.safetensors \
    runs/synth-v2/model.safetensors runs/tumsyn-v2.safetensors
