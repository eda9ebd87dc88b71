#!/usr/bin/env bash
# Train the model v2 candidate (tumsyn-v2) on the CPU, in resumable pieces: rerun the script after
# an interruption and every stage continues where it stopped. Not shipped yet (README, "Model v2").
#
#   bash scripts/train_release.sh        # hours on 2 CPU cores; see the README's model card
#
# 1. simulate 24 subjects scanned with the 25 protocols of the packaged library (1.5/3/7 T, four
#    vendors, all seven contrasts) on a common 2 mm grid, for stage 1;
# 2. stage 1: bmlip-tiny, contrastive text-image pre-training with each prompt's voxel size drawn
#    from 0.7-3 mm (configs/bmlip-v2.yaml);
# 3. stage 2: one tumsyn-tiny network per input modality (T1w, T2w, PD), each fine-tuned from model
#    v1 on the frozen stage-1 text encoder, on samples generated on the fly from virtual subjects:
#    randomised inputs of that modality's sequence family at any resolution, scaled by division
#    (input_normalisation: scale), exact targets of the library's protocols at 0.7-3 mm
#    (configs/synth-v2-t1.yaml, -t2.yaml, -pd.yaml; one network for every input family
#    collapsed, docs/decisions.md);
# 4. plot the training curves (docs/figures/training_curves.png);
# 5. bundle text tower + networks into the shipped checkpoint, a routed model whose T1w network
#    also reads inputs of other or unknown modality (float16, with training coverage).
# Outputs: runs/bmlip-v2/ and runs/synth-v2-{t1,t2,pd}/ (model.safetensors, metrics.csv, state.pt).
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
for network in t1 t2 pd; do
    train train "configs/synth-v2-$network.yaml" "runs/synth-v2-$network"
done
.venv/bin/python scripts/plot_training.py runs/bmlip-v2/metrics.csv runs/synth-v2-t1/metrics.csv \
    docs/figures/training_curves.png
.venv/bin/python scripts/package_release.py tumsyn-v2 runs/bmlip-v2/model.safetensors \
    runs/tumsyn-v2.safetensors T1w=runs/synth-v2-t1/model.safetensors \
    T2w=runs/synth-v2-t2/model.safetensors PD=runs/synth-v2-pd/model.safetensors --fallback T1w
