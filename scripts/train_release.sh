#!/usr/bin/env bash
# Train model v2 (tumsyn-v2, the bundled default) on the CPU, in resumable pieces: rerun the script
# after an interruption and every stage continues where it stopped (README, "Model card").
#
#   bash scripts/train_release.sh        # hours on 2 CPU cores; see the README's model card
#
# 1. simulate 24 subjects scanned with the 25 protocols of the packaged library (1.5/3/7 T, four
#    vendors, all seven contrasts) on a common 2 mm grid, for stage 1;
# 2. stage 1: bmlip-tiny, contrastive text-image pre-training with each prompt's voxel size drawn
#    from 0.7-3 mm and a contrastive batch of 32 (configs/bmlip-v2-b32.yaml; with v1's batch of 8
#    the tower put FLAIR and SWI prompts nearly together, docs/decisions.md);
# 3. stage 2: one tumsyn-tiny-film network per input modality (T1w, T2w, PD) on the frozen stage-1
#    text encoder, trained on samples generated on the fly from virtual subjects: randomised
#    inputs of that modality's sequence family at any resolution, scaled by division
#    (input_normalisation: scale), exact targets of the library's protocols at 0.7-3 mm. The T1w
#    network: model v1's fine-tuned (configs/synth-v2-t1-b32.yaml), given the FiLM fusion
#    (-t1-film.yaml), then trained on inputs in the T1w tissue order (-t1-film-tb.yaml); the T2w
#    and PD networks start from the second of these (configs/synth-v2-t2-film.yaml,
#    -pd-film.yaml); a FLAIR specialist for T1w inputs starts from the T1w network and learns the
#    library's FLAIR protocols alone (configs/synth-v2-t1-flair.yaml, -flair-b.yaml: shared with 24
#    other targets, FLAIR's grey matter stayed below white). One network for every input family
#    collapsed (docs/decisions.md);
# 4. plot the training curves (docs/figures/training_curves.png);
# 5. bundle text tower + networks into a routed model whose T1w network also reads inputs of
#    other or unknown modality, with the T1w network's FLAIR specialist (float16, with training
#    coverage): runs/tumsyn-v2-base.safetensors;
# 6. a T1w specialist for T2w inputs, fine-tuned from that file's T2w network on its own text
#    tower (configs/synth-v2-t2-t1.yaml: the library's T1w protocols alone), and that file's
#    FLAIR specialist fine-tuned with targets scaled by their lesion-free voxels
#    (configs/synth-v2-t1-flair-n.yaml), put in its place: runs/tumsyn-v2-fn.safetensors;
# 7. that file's T1w network and FLAIR specialist fine-tuned with inputs bent by a wider gamma
#    (configs/synth-v2-t1-gamma.yaml, -t1-flair-gamma.yaml; trained on a GPU for the shipped
#    file, see the model card), put in their places: runs/tumsyn-v2-gamma.safetensors;
# 8. a network for FLAIR inputs, fine-tuned from that file's T1w network
#    (configs/synth-v2-flair-input.yaml), added to it: runs/tumsyn-v2-fi.safetensors;
# 9. after incidental magnetisation transfer came to saturate grey matter by its measured MTR
#    (docs/calibration.md), its T1w specialist for T2w inputs fine-tuned 300 steps on the
#    recalibrated simulator (configs/synth-v2-t2-t1-mt.yaml), put in its place, with age and sex
#    left out of its prompts: runs/tumsyn-v2-mt.safetensors (the same fine-tune of the other five
#    networks was measured and not kept: docs/decisions.md);
# 10. after the simulator came to render the dura that skull strips leave at the brain mask's rim
#    (class DURA, tissues.py), that file's T1w network and its T1w specialist for T2w inputs
#    fine-tuned on it (configs/synth-v2-t1-dura.yaml, -t2-t1-dura.yaml), put in their places:
#    runs/tumsyn-v2-dura.safetensors (the same fine-tune of the PD network was measured and not
#    kept: docs/decisions.md);
# 11. after the simulator came to render the venous sinuses inside the brain mask (class SINUS,
#    sinuses.py), that file's T1w network fine-tuned on it (configs/synth-v2-t1-sinus.yaml), put in
#    its place: runs/tumsyn-v2-sinus.safetensors;
# 12. that file's T1w specialist for T2w inputs fine-tuned on the same simulator
#    (configs/synth-v2-t2-t1-sinus.yaml), put in its place: runs/tumsyn-v2-sinus-t2.safetensors;
# 13. that file's T1w network and its T1w specialist for T2w inputs given a pooled context branch
#    (tumsyn-tiny-ctx: features pooled by 4, two residual blocks, added through a projection that
#    starts at zero) and fine-tuned 600 steps each (configs/synth-v2-t1-ctx.yaml,
#    -t2-t1-ctx.yaml), put in their places: the shipped checkpoint.
# Outputs: runs/bmlip-v2-b32/, runs/synth-v2-t1-b32{,-film,-film-tb}/, runs/synth-v2-{t2,pd}-b32-film/,
# runs/synth-v2-t1-flair{,-b,-n,-gamma}/, runs/synth-v2-t2-t1/, runs/synth-v2-t1-gamma/,
# runs/synth-v2-flair-input/, runs/synth-v2-t2-t1-mt/, runs/synth-v2-{t1,t2-t1}-dura/,
# runs/synth-v2-{t1,t2-t1}-{sinus,ctx}/ (model.safetensors, metrics.csv, state.pt),
# runs/tumsyn-v2-{base,fn,gamma,fi,mt,dura,sinus,sinus-t2}.safetensors and
# runs/tumsyn-v2.safetensors.
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
train train-text configs/bmlip-v2-b32.yaml runs/bmlip-v2-b32
train train configs/synth-v2-t1-b32.yaml runs/synth-v2-t1-b32
train train configs/synth-v2-t1-film.yaml runs/synth-v2-t1-b32-film
train train configs/synth-v2-t1-film-tb.yaml runs/synth-v2-t1-b32-film-tb
train train configs/synth-v2-t2-film.yaml runs/synth-v2-t2-b32-film
train train configs/synth-v2-pd-film.yaml runs/synth-v2-pd-b32-film
train train configs/synth-v2-t1-flair.yaml runs/synth-v2-t1-flair
train train configs/synth-v2-t1-flair-b.yaml runs/synth-v2-t1-flair-b
.venv/bin/python scripts/plot_training.py runs/bmlip-v2-b32/metrics.csv \
    runs/synth-v2-t1-b32/metrics.csv docs/figures/training_curves.png
if [ ! -f runs/tumsyn-v2-base.safetensors ]; then  # the specialist below learns from this file
    .venv/bin/python scripts/package_release.py tumsyn-v2 runs/bmlip-v2-b32/model.safetensors \
        runs/tumsyn-v2-base.safetensors T1w=runs/synth-v2-t1-b32-film-tb/model.safetensors \
        T2w=runs/synth-v2-t2-b32-film/model.safetensors \
        PD=runs/synth-v2-pd-b32-film/model.safetensors \
        T1w:FLAIR=runs/synth-v2-t1-flair-b/model.safetensors --fallback T1w
fi
train train configs/synth-v2-t2-t1.yaml runs/synth-v2-t2-t1
train train configs/synth-v2-t1-flair-n.yaml runs/synth-v2-t1-flair-n
if [ ! -f runs/tumsyn-v2-fn.safetensors ]; then  # the gamma step below learns from this file
    .venv/bin/python scripts/package_release.py tumsyn-v2 runs/tumsyn-v2-base.safetensors \
        runs/tumsyn-v2-fn.safetensors T2w:T1w=runs/synth-v2-t2-t1/model.safetensors \
        T1w:FLAIR=runs/synth-v2-t1-flair-n/model.safetensors
fi
train train configs/synth-v2-t1-gamma.yaml runs/synth-v2-t1-gamma
train train configs/synth-v2-t1-flair-gamma.yaml runs/synth-v2-t1-flair-gamma
if [ ! -f runs/tumsyn-v2-gamma.safetensors ]; then  # the FLAIR-input network learns from this file
    .venv/bin/python scripts/package_release.py tumsyn-v2 runs/tumsyn-v2-fn.safetensors \
        runs/tumsyn-v2-gamma.safetensors T1w=runs/synth-v2-t1-gamma/model.safetensors \
        T1w:FLAIR=runs/synth-v2-t1-flair-gamma/model.safetensors
fi
train train configs/synth-v2-flair-input.yaml runs/synth-v2-flair-input
if [ ! -f runs/tumsyn-v2-fi.safetensors ]; then  # the recalibration step learns from this file
    .venv/bin/python scripts/package_release.py tumsyn-v2 runs/tumsyn-v2-gamma.safetensors \
        runs/tumsyn-v2-fi.safetensors FLAIR=runs/synth-v2-flair-input/model.safetensors
fi
train train configs/synth-v2-t2-t1-mt.yaml runs/synth-v2-t2-t1-mt
# Age and sex are left out of every prompt: the simulator's tissue relaxation depends on neither,
# so they carry no contrast in the training data (docs/decisions.md, "Model v2 ignores age and sex").
if [ ! -f runs/tumsyn-v2-mt.safetensors ]; then  # the dura step below learns from this file
    .venv/bin/python scripts/package_release.py tumsyn-v2 runs/tumsyn-v2-fi.safetensors \
        runs/tumsyn-v2-mt.safetensors T2w:T1w=runs/synth-v2-t2-t1-mt/model.safetensors \
        --ignore-prompt-fields age,sex
fi
train train configs/synth-v2-t1-dura.yaml runs/synth-v2-t1-dura
train train configs/synth-v2-t2-t1-dura.yaml runs/synth-v2-t2-t1-dura
if [ ! -f runs/tumsyn-v2-dura.safetensors ]; then  # the sinus step below learns from this file
    .venv/bin/python scripts/package_release.py tumsyn-v2 runs/tumsyn-v2-mt.safetensors \
        runs/tumsyn-v2-dura.safetensors T1w=runs/synth-v2-t1-dura/model.safetensors \
        T2w:T1w=runs/synth-v2-t2-t1-dura/model.safetensors
fi
train train configs/synth-v2-t1-sinus.yaml runs/synth-v2-t1-sinus
if [ ! -f runs/tumsyn-v2-sinus.safetensors ]; then  # the last step below learns from this file
    .venv/bin/python scripts/package_release.py tumsyn-v2 runs/tumsyn-v2-dura.safetensors \
        runs/tumsyn-v2-sinus.safetensors T1w=runs/synth-v2-t1-sinus/model.safetensors
fi
train train configs/synth-v2-t2-t1-sinus.yaml runs/synth-v2-t2-t1-sinus
if [ ! -f runs/tumsyn-v2-sinus-t2.safetensors ]; then  # the context step below learns from it
    .venv/bin/python scripts/package_release.py tumsyn-v2 runs/tumsyn-v2-sinus.safetensors \
        runs/tumsyn-v2-sinus-t2.safetensors T2w:T1w=runs/synth-v2-t2-t1-sinus/model.safetensors
fi
train train configs/synth-v2-t1-ctx.yaml runs/synth-v2-t1-ctx
train train configs/synth-v2-t2-t1-ctx.yaml runs/synth-v2-t2-t1-ctx
.venv/bin/python scripts/package_release.py tumsyn-v2 runs/tumsyn-v2-sinus-t2.safetensors \
    runs/tumsyn-v2.safetensors T1w=runs/synth-v2-t1-ctx/model.safetensors \
    T2w:T1w=runs/synth-v2-t2-t1-ctx/model.safetensors
