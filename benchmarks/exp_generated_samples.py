"""Does a model read its input's contrast? Checked on generated stage-2 samples, cheaply.

    .venv/bin/python benchmarks/exp_generated_samples.py NAME=PIPELINE [...] [--only TABLE]

For each pipeline (a ``.safetensors`` path or a bundled model's name), on samples of the v2
generator (``tumsyn.data.generated``: randomised inputs, exact targets) from two held-out
virtual subjects:

1. **L1 by input kind and target modality** on 48 samples (half physics inputs, half random
   tissue intensities), beside the L1 of predicting each sample's own mean;
2. **contrast transfer with an ideal input**: a noise-free 2 mm input of a default 3 T protocol
   (MPRAGE, T2w, PD) in, another default protocol at 2 mm out (the directions of the held-out
   real-scan check and FLAIR), three patches each: the mean prediction in each quintile of the
   target's brain values. A model that reads its input rises with the target across the
   quintiles; a collapsed one is flat; one that copies its input falls where the contrast
   inverts (T2w -> T1w). Beside it, the PSNR over the brain of the prediction, of the input
   copied and of the input inverted (1 - input): the held-out real-scan check's bar is 1 dB
   above the better of the two baselines. With ``--inputs scanned`` the inputs are what a real
   scan gives instead (the same default protocols at 1 x 1 x 1.2 mm, SNR 25 and a fixed bias
   field) and the targets 1 mm: does the margin over the baselines survive noise and bias?

Why it exists: whole-volume checks (``exp_colin27.py``) take minutes per model; this shows in one
whether a training recipe has learned to map intensities or only the level of each contrast
(docs/decisions.md, "Generated inputs alone do not train tumsyn-tiny").
3. **separation of prompts**: from the same ideal T1w, how far apart the model's FLAIR and its
   SWI, PD, T2*w and T2w outputs are, beside how far apart the simulator's images are.
4. **the map a model learned**: from the same ideal T1w (two patches), the mean target and the
   mean prediction of FLAIR, SWI and PD in each tenth of the input's brain values: the map
   the simulator asks for (FLAIR's rises from CSF to grey matter and falls to white matter)
   beside the one the model answers, e.g. the same shape but flattened.

Writes benchmarks/results/generated_samples_{l1,transfer,transfer_mean,separation,map}.json.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import report
from tumsyn.data.generated import GeneratedPairs
from tumsyn.data.volumes import recorded_normalisation
from tumsyn.infer.loading import checkpoint_path
from tumsyn.metadata import default_protocol, load_protocols
from tumsyn.models import load_checkpoint
from tumsyn.models.checkpoint import read_checkpoint_metadata
from tumsyn.models.liif import sample_grid
from tumsyn.simulate import CohortSettings, cohort_subject
from tumsyn.simulate.randomize import InputDraw, InputRandomizer
from tumsyn.simulate.render import ScanSettings
from tumsyn.train.synthesis import validation_subject_seed

SAMPLES = 48
QUINTILES = np.linspace(0.0, 1.0, 6)
DIRECTIONS = (("T1w", "T2w"), ("T1w", "FLAIR"), ("T1w", "PD"), ("T1w", "T1w"),
              ("T2w", "T1w"), ("PD", "T2w"), ("T2w", "FLAIR"))  # fmt: skip
TABLES = ("l1", "transfer", "separation", "map")
MAPPED = ("FLAIR", "SWI", "PD")  # target contrasts of the map table, from an ideal T1w
DECILES = np.linspace(0.0, 1.0, 11)
SEPARATED = ("FLAIR", "SWI", "PD", "T2star", "T2w")  # FLAIR against each, from a T1w


@functools.cache  # one data set per kind: models that scale inputs alike share renders
def _pairs(
    physics_probability: float, length: int, seed: int, normalisation: str
) -> GeneratedPairs:
    """Samples of the validation subjects of a stage-2 run with seed 0, inputs scaled the way
    the model was trained (its checkpoint's ``input_normalisation``)."""
    settings = CohortSettings(2, seed=validation_subject_seed(0), enhancing_fraction=0.3)
    subjects = [cohort_subject(settings, index) for index in (1, 2)]
    targets = [protocol.metadata for protocol in load_protocols("library")]
    inputs = InputRandomizer(physics_probability=physics_probability)
    return GeneratedPairs(subjects, targets, inputs, patch_size=32, queries=8000, length=length,
                          seed=seed, normalisation=normalisation)  # fmt: skip


def _predict(pipeline, sample: dict, input_modality: str | None, target: str) -> torch.Tensor:
    """The prediction of ``sample``'s queries; the input's and the ``target`` modality pick a
    routed model's network."""
    with torch.no_grad():
        predict = pipeline.predictor(sample["prompt"], input_modality=input_modality,
                                     target_modality=target)  # fmt: skip
        return predict(sample["source"][None], sample["coord"][None], sample["cell"][None])[0]


def l1_rows(name: str, pipeline, samples: list) -> list[dict]:
    """Mean L1 per input kind and target modality, and that of each sample's own mean."""
    groups = defaultdict(list)
    for parameters, sample in samples:
        target = sample["target"]
        protocol = parameters.draw.protocol  # None: random tissue intensities, modality unknown
        modality = None if protocol is None else protocol.modality
        predicted = _predict(pipeline, sample, modality, parameters.target.modality)
        error = float((predicted - target).abs().mean())
        own_mean = float((target - target.mean()).abs().mean())
        kind = "physics input" if protocol is not None else "random input"
        for group in ("all", kind, f"target {parameters.target.modality}"):
            groups[group].append((error, own_mean))
    return [
        {"model": name, "samples": group, "n": len(values),
         "L1": round(float(np.mean([v[0] for v in values])), 4),
         "L1 of own mean": round(float(np.mean([v[1] for v in values])), 4)}
        for group, values in sorted(groups.items())
    ]  # fmt: skip


SCANNED_BIAS = tuple(float(c) for c in np.random.default_rng(3).normal(0.0, 0.12, 9))
#: The transfer table's input kinds: (input voxel size, scan settings, target voxel size).
#: ``ideal``, noise-free at 2 mm; ``scanned``, a routine scan at 1 x 1 x 1.2 mm with SNR 25 and a
#: fixed bias field, targets at 1 mm.
INPUT_KINDS = {
    "ideal": ((2.0, 2.0, 2.0), ScanSettings(snr=1e9, bias=(0.0,) * 9), 2.0),
    "scanned": ((1.0, 1.0, 1.2), ScanSettings(snr=25.0, bias=SCANNED_BIAS, noise_seed=7), 1.0),
}


def _chosen_parameters(pairs: GeneratedPairs, index: int, source: str, modality: str, kind: str):
    """Sample ``index``'s patch with a ``kind`` input of ``source``'s default protocol, without
    randomisation, and a target of ``modality``'s default protocol (:data:`INPUT_KINDS`)."""
    voxel, scan, target_size = INPUT_KINDS[kind]
    protocol = default_protocol(source).metadata.replace(voxel_size=voxel)
    draw = InputDraw(protocol=protocol, signals=None, voxel_size=voxel, scan=scan,
                     shift_mm=(0.0, 0.0, 0.0), gamma=1.0, mask_margin_mm=0.0)  # fmt: skip
    target = default_protocol(modality).metadata.replace(voxel_size=(target_size,) * 3)
    return replace(pairs.parameters(index), draw=draw, target=target)


@functools.cache  # the separation and map tables and every model ask for the same patches
def _chosen_sample(
    pairs: GeneratedPairs, index: int, source: str, modality: str, kind: str = "ideal"
) -> dict:
    return pairs.render(_chosen_parameters(pairs, index, source, modality, kind))


def _brain_psnr(values: np.ndarray, truth: np.ndarray, brain: np.ndarray) -> float:
    """PSNR (dB, peak 1) of ``values`` against ``truth`` over the brain's queries."""
    error = np.mean((np.clip(values[brain], 0.0, 1.0) - truth[brain]) ** 2)
    return round(float(10 * np.log10(1.0 / max(error, 1e-10))), 2)


def transfer_rows(
    name: str, pipeline, pairs: GeneratedPairs, baseline: GeneratedPairs, kind: str = "ideal"
) -> list[dict]:
    """Mean prediction per target quintile (brain values) with ``kind`` inputs; the copy
    baselines from ``baseline``'s samples (the same for every model: inputs scaled as the paper
    does)."""
    rows = []
    for source, modality in DIRECTIONS:
        for index in range(3):
            sample = _chosen_sample(pairs, index, source, modality, kind)
            truth = sample["target"][:, 0].numpy()
            output = _predict(pipeline, sample, source, modality)[:, 0].numpy()
            brain = truth > 0.02
            edges = np.quantile(truth[brain], QUINTILES)
            means = [output[brain & (truth >= lo) & (truth <= hi)].mean()
                     for lo, hi in itertools.pairwise(edges)]  # fmt: skip
            as_paper = _chosen_sample(baseline, index, source, modality, kind)["source"][None]
            copy = sample_grid(as_paper, sample["coord"][None])[0, :, 0].numpy()
            rows.append({
                "model": name, "direction": f"{source} -> {modality}", "patch": index,
                "target quintile edges": " ".join(f"{e:.2f}" for e in edges),
                "prediction per quintile": " ".join(f"{m:.2f}" for m in means),
                "rise": round(float(means[-1] - means[0]), 3),
                "PSNR": _brain_psnr(output, truth, brain),
                "copy PSNR": _brain_psnr(copy, truth, brain),
                "inverted PSNR": _brain_psnr(1.0 - copy, truth, brain),
            })  # fmt: skip
    return rows


def separation_rows(name: str, pipeline, pairs: GeneratedPairs) -> list[dict]:
    """How far apart the model's outputs for two target contrasts are, from the same ideal T1w,
    beside how far apart the simulator's are (mean absolute difference over the queries):
    a model that cannot tell two prompts apart answers both alike."""
    rows = []
    for other in SEPARATED[1:]:
        predicted, simulated = [], []
        for index in range(3):
            outputs, truths = [], []
            for modality in (SEPARATED[0], other):
                sample = _chosen_sample(pairs, index, "T1w", modality)
                outputs.append(_predict(pipeline, sample, "T1w", modality)[:, 0].numpy())
                truths.append(sample["target"][:, 0].numpy())
            predicted.append(np.abs(outputs[0] - outputs[1]).mean())
            simulated.append(np.abs(truths[0] - truths[1]).mean())
        rows.append({"model": name, "contrasts": f"{SEPARATED[0]} vs {other}",
                     "predictions apart": round(float(np.mean(predicted)), 3),
                     "simulator apart": round(float(np.mean(simulated)), 3)})  # fmt: skip
    return rows


def map_rows(name: str, pipeline, pairs: GeneratedPairs) -> list[dict]:
    """Mean target and prediction per tenth of the input's brain values (input > 0.05 at the
    queries), from an ideal T1w, over two patches."""
    rows = []
    for modality in MAPPED:
        inputs, truths, outputs = [], [], []
        for index in range(2):
            sample = _chosen_sample(pairs, index, "T1w", modality)
            inputs.append(sample_grid(sample["source"][None], sample["coord"][None])[0, :, 0])
            truths.append(sample["target"][:, 0])
            outputs.append(_predict(pipeline, sample, "T1w", modality)[:, 0])
        values, truth, output = (torch.cat(x).numpy() for x in (inputs, truths, outputs))
        brain = values > 0.05
        edges = np.quantile(values[brain], DECILES)
        for tenth, (lo, hi) in enumerate(itertools.pairwise(edges), start=1):
            chosen = brain & (values >= lo) & (values <= hi)
            rows.append({"model": name, "target": modality, "input tenth": tenth,
                         "input": round(float(values[chosen].mean()), 2),
                         "target mean": round(float(truth[chosen].mean()), 2),
                         "prediction": round(float(output[chosen].mean()), 2)})  # fmt: skip
    return rows


def transfer_means(rows: list[dict]) -> list[dict]:
    """The transfer table's numbers averaged over its patches, per model and direction."""
    groups = defaultdict(list)
    for row in rows:
        groups[row["model"], row["direction"]].append(row)
    keys = ("rise", "PSNR", "copy PSNR", "inverted PSNR")
    return [
        {"model": model, "direction": direction,
         **{key: round(float(np.mean([r[key] for r in group])), 2) for key in keys}}
        for (model, direction), group in groups.items()
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", metavar="NAME=PIPELINE")
    parser.add_argument("--only", choices=TABLES, help="compute one table only")
    parser.add_argument("--inputs", choices=INPUT_KINDS, default="ideal",
                        help="the transfer table's inputs (default: ideal)")  # fmt: skip
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    tables = {name: [] for name in TABLES if args.only in (None, name)}
    if "transfer" in tables:  # the copy baselines, the same for every model
        baseline = _pairs(1.0, 3, seed=5, normalisation="tumsyn")
    for item in args.models:
        name, _, path = item.partition("=")
        path = checkpoint_path(path or name)
        pipeline = load_checkpoint(path).eval()
        scaling = recorded_normalisation(read_checkpoint_metadata(path)["extra"])
        if "l1" in tables:
            pairs = _pairs(0.5, SAMPLES, seed=11, normalisation=scaling)
            samples = [(pairs.parameters(i), pairs[i]) for i in range(SAMPLES)]
            tables["l1"] += l1_rows(name, pipeline, samples)
        if tables.keys() - {"l1"}:
            ideal = _pairs(1.0, 3, seed=5, normalisation=scaling)
        if "transfer" in tables:
            tables["transfer"] += transfer_rows(name, pipeline, ideal, baseline, args.inputs)
        if "separation" in tables:
            tables["separation"] += separation_rows(name, pipeline, ideal)
        if "map" in tables:
            tables["map"] += map_rows(name, pipeline, ideal)
    command = "python benchmarks/exp_generated_samples.py " + " ".join(args.models)
    command += f" --only {args.only}" if args.only else ""
    command += f" --inputs {args.inputs}" if args.inputs != "ideal" else ""
    if "transfer" in tables:
        tables["transfer_mean"] = transfer_means(tables["transfer"])
    suffix = "" if args.inputs == "ideal" else f"_{args.inputs}"
    for table, rows in tables.items():
        suffixed = suffix if table.startswith("transfer") else ""
        report(f"generated_samples_{table}{suffixed}", rows, {"command": command})
    return tables


if __name__ == "__main__":
    main()
