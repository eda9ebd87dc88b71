"""Bundle trained stages into a shipped checkpoint (text tower + synthesis network(s), fp16).

    .venv/bin/python scripts/package_release.py NAME STAGE1 OUT STAGE2
    .venv/bin/python scripts/package_release.py NAME STAGE1 OUT MODALITY=STAGE2 [...] [--fallback M]
    .venv/bin/python scripts/package_release.py NAME BASE OUT [KEY=STAGE2 ...]
    ... [--ignore-prompt-fields age,sex]

One stage-2 run makes an ordinary pipeline; several, each named by the input modality its network
reads (``T1w=runs/synth-v2-t1/model.safetensors``), make a routed one (tumsyn.models.routed), whose
fallback (default: the first) reads inputs of any other or an unknown modality; a network named
``INPUT:TARGET`` (``T1w:FLAIR=...``) answers only that target from those inputs. Records the
training coverage (from the stage-2 runs' prompts), their validation metrics and training steps in
the file's metadata.

In place of a stage-1 run, BASE is a routed pipeline to extend (networks fine-tuned from it with
``text_encoder: BASE``, ``init: BASE``): its text tower, networks, fallback, facts and coverage
are kept, and the networks named here are added (or replace those of the same key); their targets
should lie inside the base's coverage, which is kept as it is. scripts/train_release.sh shows the
release's calls.

``--ignore-prompt-fields`` records prompt fields that synthesis leaves out of every prompt
(tumsyn.infer.loading.ignored_prompt_fields): fields the training data carry no contrast for, such
as age and sex for models trained on the simulator, whose tissue relaxation depends on neither.
A base's record is kept unless the option is given.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import torch

from tumsyn.data.volumes import recorded_normalisation
from tumsyn.infer.coverage import coverage_from_prompts
from tumsyn.infer.loading import IGNORABLE_PROMPT_FIELDS
from tumsyn.models import BMLIP, SynthesisPipeline, load_checkpoint, make_pipeline, save_checkpoint
from tumsyn.models.checkpoint import read_checkpoint_metadata
from tumsyn.models.routed import RoutedNetwork, make_routed


@dataclass
class Parts:
    """What the packaged model is made of: the text tower, its stage-1 facts, the networks by key
    with their facts and the runs' prompts, and (from a base) the fallback and coverage."""

    text_encoder: torch.nn.Module
    stage1: dict
    networks: dict = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    fallback: str | None = None
    coverage: dict | None = None
    ignored_fields: tuple = ()
    prompts: set = field(default_factory=set)
    input_normalisation: set = field(default_factory=set)


def _start(stage1: str) -> Parts:
    """The parts a stage-1 run (its tower) or a routed base pipeline (everything) gives."""
    model = load_checkpoint(stage1)
    extra = read_checkpoint_metadata(stage1)["extra"]
    if isinstance(model, BMLIP):
        return Parts(model.text_encoder(), {"steps": extra["step"], "metrics": extra["metrics"]})
    if not (isinstance(model, SynthesisPipeline) and isinstance(model.synth, RoutedNetwork)):
        raise SystemExit(f"{stage1}: neither a stage-1 run nor a routed pipeline to extend")
    return Parts(model.text, extra["stage1"], dict(model.synth.networks),
                 dict(extra["stage2"]["networks"]), model.synth.fallback, extra["coverage"],
                 tuple(extra.get("ignored_prompt_fields", ())),
                 input_normalisation={recorded_normalisation(extra)})  # fmt: skip


def _add(parts: Parts, key: str, run: str) -> None:
    """Add the stage-2 run ``run`` under ``key`` (replacing a base network of that key)."""
    extra = read_checkpoint_metadata(run)["extra"]
    parts.networks[key] = load_checkpoint(run)
    parts.facts[key] = {"steps": extra["step"], "metrics": extra["metrics"]}
    parts.prompts.update(extra["prompts"])
    parts.input_normalisation.add(recorded_normalisation(extra))


def _field_names(text: str) -> tuple[str, ...]:
    """``age,sex`` -> ``("age", "sex")``, each a field a model may leave out."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in IGNORABLE_PROMPT_FIELDS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown)}: not a prompt field a model may leave out "
            f"({', '.join(IGNORABLE_PROMPT_FIELDS)})"
        )
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("stage1", metavar="STAGE1|BASE")
    parser.add_argument("out")
    parser.add_argument("stage2", nargs="*", metavar="[KEY=]STAGE2")
    parser.add_argument("--fallback", metavar="MODALITY")
    parser.add_argument(
        "--ignore-prompt-fields", metavar="FIELDS", type=_field_names,
        help="comma-separated prompt fields that synthesis leaves out (e.g. age,sex)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    parts = _start(args.stage1)
    if not args.stage2 and not parts.networks:
        raise SystemExit("give the stage-2 run(s) to package (only a base may be repackaged alone)")
    if args.ignore_prompt_fields is not None:
        parts.ignored_fields = args.ignore_prompt_fields
    single = len(args.stage2) == 1 and "=" not in args.stage2[0] and not parts.networks
    if not single and not all("=" in item for item in args.stage2):
        raise SystemExit("name each network of a routed model: KEY=STAGE2 (T1w=..., T1w:FLAIR=...)")
    named = {"": args.stage2[0]} if single else dict(item.split("=", 1) for item in args.stage2)
    for key, run in named.items():
        _add(parts, key, run)
    if len(parts.input_normalisation) != 1:
        kinds = sorted(parts.input_normalisation)
        raise SystemExit(f"the networks scale their inputs differently ({kinds})")
    coverage = parts.coverage or coverage_from_prompts(sorted(parts.prompts))
    if single:
        network, stage2 = parts.networks[""], parts.facts[""]
    else:
        fallback = args.fallback or parts.fallback or next(iter(named))
        network, stage2 = make_routed(parts.networks, fallback), {"networks": parts.facts}
    extra = {
        "name": args.name,
        "coverage": coverage,
        "stage1": parts.stage1,
        "stage2": stage2,
        "input_normalisation": parts.input_normalisation.pop(),
        "training_data": "simulated only (tumsyn simulate, scripts/train_release.sh)",
    }
    if parts.ignored_fields:
        extra["ignored_prompt_fields"] = list(parts.ignored_fields)
    pipeline = make_pipeline(parts.text_encoder, network)
    path = save_checkpoint(args.out, pipeline, extra=extra, dtype=torch.float16)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
