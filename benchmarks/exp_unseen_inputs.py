"""Inputs of contrasts that no network of model v2 was trained to read: T1CE, T2*w and SWI.

    .venv/bin/python benchmarks/exp_unseen_inputs.py [--suite quick|release|FILE] [--workdir DIR]
        [--model NAME=CHECKPOINT ...] [--tasks SOURCE:TARGET ...]

Model v2 keeps a network per input modality (T1w, T2w, PD, FLAIR); an input of any other
contrast is read by the network its intensities point to (:mod:`tumsyn.infer.modality_guess`),
else by its fallback, the T1w network. The paper's eight tasks have one such input (T1CE ->
FLAIR), so this experiment asks the question directly: T1CE, T2*w and SWI inputs of the
held-out subjects of both splits into T1w, T2w and PD targets, for every conditioner's model,
the baselines and the models given with ``--model`` (``make eval`` adds the shipped ones). On
whole volumes (``--slices N`` crops to the central N slices), since the guess needs the whole
brain: on a slab the fallback reads every such input.

Writes benchmarks/results/unseen_inputs.json (internal split, per method), unseen_inputs_tasks,
_inputs and _cases, the same four for the zero-shot split (unseen_inputs_zero_shot*), and
docs/figures/eval_unseen_inputs*.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from evaluation import given_own_data, split_experiment

#: Input contrasts without a network of their own in model v2, into the commonest targets.
UNSEEN_INPUT_TASKS = (("T1CE", "T2w"), ("T1CE", "PD"), ("T2star", "T1w"), ("T2star", "T2w"),
                      ("SWI", "T1w"), ("SWI", "T2w"))  # fmt: skip
SPLITS = (("internal", "unseen_inputs"), ("zero-shot", "unseen_inputs_zero_shot"))


def main(argv: list[str] | None = None) -> dict:
    splits = SPLITS[:1] if given_own_data(argv) else SPLITS
    return {
        split: split_experiment(
            argv, split=split, name=name, doc=__doc__, tasks=UNSEEN_INPUT_TASKS, slices=0
        )
        for split, name in splits
    }


if __name__ == "__main__":
    main()
