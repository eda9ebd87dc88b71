"""Where a generated target's scale puts pure grey and white matter, subject by subject.

    .venv/bin/python benchmarks/exp_target_scale.py [CONFIG]

For the virtual subjects and target protocols of a stage-2 generator config (default:
configs/synth-v2-t1-flair.yaml, the FLAIR specialist's first run), each subject's lesion volume
(WMH and enhancing, cc) and the mean of its pure (> 95 %) grey and white matter on the noise-free
target, scaled as ``generator.target_scale: image`` and ``normal_tissue`` scale it
(``GeneratedPairs.target_range``). With ``image`` the lesions of FLAIR set the top, so grey matter
moves with a lesion load that a patch cannot see (docs/decisions.md). Prints a table and writes
benchmarks/results/target_scale.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report
from tumsyn.data.generated import GeneratedPairs
from tumsyn.metadata import load_protocols
from tumsyn.simulate import CohortSettings, cohort_subject
from tumsyn.simulate.randomize import InputRandomizer
from tumsyn.simulate.render import tissue_object
from tumsyn.simulate.sequences import signal
from tumsyn.simulate.tissues import LESIONS
from tumsyn.train.config import load_train_config

DEFAULT_CONFIG = Path(__file__).parents[1] / "configs" / "synth-v2-t1-flair.yaml"


def pure_means(anatomy, target, pure: dict) -> dict[str, float]:
    """Mean intensity of pure grey and pure white matter of the noise-free target, unscaled
    (scaling is linear, so a scale maps these means as it maps the voxels)."""
    values = tissue_object(anatomy, signal(anatomy.properties(target.field_strength), target))
    return {tissue: float(values[where].mean()) for tissue, where in pure.items()}


def main(argv: list[str]) -> None:
    config_path = Path(argv[0]) if argv else DEFAULT_CONFIG
    config = load_train_config(config_path, "synthesis")
    g = config.generator
    settings = CohortSettings(g.subjects, seed=config.seed, enhancing_fraction=g.enhancing_fraction)
    targets = [p.metadata for p in load_protocols(config_path.parent / g.targets)]
    first = [cohort_subject(settings, 1)]
    scales = {
        name: GeneratedPairs(first, targets, InputRandomizer(), target_scale=name)
        for name in ("image", "normal_tissue")
    }
    rows = []
    for index in range(1, g.subjects + 1):
        anatomy = cohort_subject(settings, index)
        lesion_cc = float(sum(anatomy.fraction(name).sum() for name in LESIONS)) / 1000
        pure = {tissue: anatomy.fraction(tissue) > 0.95 for tissue in ("GM", "WM")}
        for number, target in enumerate(targets, start=1):
            row = {"subject": index, "lesions (cc)": round(lesion_cc, 1), "protocol": number}
            means = pure_means(anatomy, target, pure)
            for name, pairs in scales.items():
                low, high = pairs.target_range(anatomy, target)
                row |= {f"{tissue} ({name})": round((mean - low) / (high - low), 2)
                        for tissue, mean in means.items()}  # fmt: skip
            rows.append(row)
    command = "python benchmarks/exp_target_scale.py " + " ".join(argv)
    report("target_scale", rows, {"command": command.strip(), "config": str(config_path)})
    for name in scales:
        for heavy in (False, True):
            gm = [r[f"GM ({name})"] for r in rows if (r["lesions (cc)"] >= 10) == heavy]
            label = "with >= 10 cc of lesions" if heavy else "with < 10 cc of lesions"
            if gm:
                print(f"{name}: GM {min(gm):.2f}-{max(gm):.2f} in subjects {label}")


if __name__ == "__main__":
    main(sys.argv[1:])
