"""Bundle trained stages into a shipped checkpoint (text tower + synthesis network(s), fp16).

    .venv/bin/python scripts/package_release.py NAME STAGE1 OUT STAGE2
    .venv/bin/python scripts/package_release.py NAME STAGE1 OUT MODALITY=STAGE2 [...] [--fallback M]

One stage-2 run makes an ordinary pipeline; several, each named by the input modality its network
reads (``T1w=runs/synth-v2-t1/model.safetensors``), make a routed one (tumsyn.models.routed), whose
fallback (default: the first) reads inputs of any other or an unknown modality; a network named
``INPUT:TARGET`` (``T1w:FLAIR=...``) answers only that target from those inputs. Records the
training coverage (from the stage-2 runs' prompts), their validation metrics and training steps in
the file's metadata. scripts/train_release.sh shows the release's call.
"""

from __future__ import annotations

import argparse

import torch

from tumsyn.data.volumes import recorded_normalisation
from tumsyn.infer.coverage import coverage_from_prompts
from tumsyn.models import load_checkpoint, make_pipeline, save_checkpoint
from tumsyn.models.checkpoint import read_checkpoint_metadata
from tumsyn.models.routed import make_routed


def _is_routed(runs: list[str]) -> bool:
    return not (len(runs) == 1 and "=" not in runs[0])


def _network(runs: list[str], fallback: str | None):
    """The stage-2 network of one run, or the routed model of ``MODALITY=RUN`` items; and the
    runs by modality (by path for one run)."""
    if not _is_routed(runs):
        return load_checkpoint(runs[0]), {runs[0]: runs[0]}
    named = dict(item.split("=", 1) for item in runs)
    networks = {modality: load_checkpoint(path) for modality, path in named.items()}
    return make_routed(networks, fallback or next(iter(named))), named


def _input_normalisation(second: dict[str, dict]) -> str:
    """The input scaling all stage-2 runs trained with (one file has one)."""
    kinds = {recorded_normalisation(extra) for extra in second.values()}
    if len(kinds) != 1:
        raise SystemExit(f"the stage-2 runs scale their inputs differently ({sorted(kinds)})")
    return kinds.pop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("stage1")
    parser.add_argument("out")
    parser.add_argument("stage2", nargs="+", metavar="[MODALITY=]STAGE2")
    parser.add_argument("--fallback", metavar="MODALITY")
    args = parser.parse_args(argv)
    text_encoder = load_checkpoint(args.stage1).text_encoder()
    network, runs = _network(args.stage2, args.fallback)
    first = read_checkpoint_metadata(args.stage1)["extra"]
    second = {key: read_checkpoint_metadata(path)["extra"] for key, path in runs.items()}
    prompts = sorted({prompt for extra in second.values() for prompt in extra["prompts"]})
    facts = {key: {"steps": extra["step"], "metrics": extra["metrics"]}
             for key, extra in second.items()}  # fmt: skip
    stage2 = {"networks": facts} if _is_routed(args.stage2) else facts[args.stage2[0]]
    extra = {
        "name": args.name,
        "coverage": coverage_from_prompts(prompts),
        "stage1": {"steps": first["step"], "metrics": first["metrics"]},
        "stage2": stage2,
        "input_normalisation": _input_normalisation(second),
        "training_data": "simulated only (tumsyn simulate, scripts/train_release.sh)",
    }
    pipeline = make_pipeline(text_encoder, network)
    path = save_checkpoint(args.out, pipeline, extra=extra, dtype=torch.float16)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
