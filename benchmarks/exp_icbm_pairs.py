"""Real-derived pairs: T1w->T2w and T2w->T1w between the MNI ICBM152 2009c T1 and T2 templates.

    make icbm-t2    # once: the two templates into data/icbm2009c/
    make icbm-pairs    # this script with the shipped models v2 and v1
    make icbm-pairs ICBM_PAIRS_ARGS='--t2w-te 80'    # the T2w's sidecar at another echo time
    make icbm-pairs ICBM_PAIRS_ARGS='--age n/a'    # the prompts at another age, or none
    .venv/bin/python benchmarks/exp_icbm_pairs.py [--model NAME=CHECKPOINT ...] [--workdir DIR]
        [--t2w-te MS] [--age YEARS|n/a] [--erode N]

Why: the shipped model is judged on real scans that are kept outside the repository, in both
directions between T1w and T2w among others, against copying and inverting the source. The 2009c
T1 and T2 templates are averages of the T1w and T2w scans of the same 152 young adults
(1.5 T; mean age 25), registered together: the one real-derived T1w/T2w pair here, and its T2w is
the only real T2w input a model can be tried on. What it is not: a single scan (averages are
smooth and noise-free), nor unseen anatomy (the simulator's anatomy and the bundled example come
from the 2009a T1 template of the same subjects), so it checks how a model reads and renders real
contrast, not how it generalises across subjects.

The script writes a BIDS data set into WORKDIR/icbm2009c: both templates brain-extracted with the
2009a template's brain, sidecars with ICBM-like 1.5 T protocols (a spoiled gradient echo, TR 18 ms,
TE 10 ms, flip angle 30 degrees; a spin echo, TR 3300 ms, TE 120 ms: the protocols BrainWeb
simulates as the ICBM ones; the templates do not record theirs), age 25, and the 2009a tissue maps
as derivatives (GM, WM, CSF, dura and sinuses: together the brain mask that is scored; GM/WM
and CSF/WM errors). It then runs the experiments' own-data path
(``evaluation.split_experiment`` with ``--data``) on it: each model (default: the bundled one),
copying and inverting the source, on whole volumes at 1 mm. Writes
benchmarks/results/icbm_pairs_own_data*.json. The template's echo time is not published (the 120
ms is BrainWeb's ICBM late echo); ``--t2w-te MS`` writes the T2w's sidecar with another one, so
the T2w targets are asked at that echo time (results as icbm_pairs_teMS_own_data*.json).
``--age`` writes another age into participants.tsv (``n/a``: none, so the prompts carry no age;
results as icbm_pairs_ageYEARS_own_data*.json or icbm_pairs_agena_own_data*.json): the simulator
ages anatomy only (atrophy, lesions), which the input already shows, so a model's output should
hardly depend on it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from evaluation import split_experiment
from icbm import T1_FILE, T2_FILE, T2_TE, brain_extracted, t1w_protocol, t2w_protocol
from tumsyn.io import save_json, save_nifti
from tumsyn.metadata import bids_image_name, sidecar_from_metadata, sidecar_path
from tumsyn.simulate.template import TEMPLATE_CLASSES, load_template

ROOT = Path(__file__).resolve().parents[1]
SUBJECT = "icbm2009c"
AGE = 25  # the ICBM152 subjects' mean age
TASKS = (("T1w", "T2w"), ("T2w", "T1w"))
COMMAND = "make icbm-pairs"  # this script with the shipped models (Makefile)


def write_dataset(root: Path, t2w_te: float = T2_TE, age: str = str(AGE)) -> Path:
    """The BIDS data set of the two brain-extracted templates, their protocols (the T2w's at echo
    time ``t2w_te``), the subject's ``age`` (``n/a``: none) and tissue maps."""
    protocols = {"T1w": t1w_protocol(), "T2w": t2w_protocol(t2w_te)}
    anat = root / f"sub-{SUBJECT}" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    for modality, path in (("T1w", T1_FILE), ("T2w", T2_FILE)):
        image = brain_extracted(path)
        name = anat / bids_image_name(SUBJECT, modality)
        save_nifti(name, np.asarray(image.dataobj), image.affine)
        save_json(sidecar_path(name), sidecar_from_metadata(protocols[modality]))
    derivatives = root / "derivatives" / "templates" / f"sub-{SUBJECT}" / "anat"
    derivatives.mkdir(parents=True, exist_ok=True)
    template = load_template()
    for tissue in TEMPLATE_CLASSES:  # together the brain mask the inputs are cut to
        fraction = np.clip(template.fraction(tissue), 0.0, 1.0)
        save_nifti(derivatives / f"sub-{SUBJECT}_label-{tissue}_probseg.nii.gz", fraction,
                   template.grid.affine)  # fmt: skip
    save_json(root / "dataset_description.json", {
        "Name": "MNI ICBM152 2009c T1 and T2 templates (real-derived averages)",
        "BIDSVersion": "1.9.0", "DatasetType": "raw",
    })  # fmt: skip
    (root / "participants.tsv").write_text(f"participant_id\tage\nsub-{SUBJECT}\t{age}\n")
    return root


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "eval-icbm")
    parser.add_argument("--t2w-te", type=float, default=T2_TE)
    parser.add_argument("--age", type=_age, default=str(AGE))
    known, rest = parser.parse_known_args(argv)
    bids = write_dataset(known.workdir / SUBJECT, known.t2w_te, known.age)
    arguments = [*rest, "--data", str(bids), "--workdir", str(known.workdir)]
    variant = []  # (name part, argument) of each setting that differs from the default
    if known.t2w_te != T2_TE:  # the template's echo time is not published: how much rests on it
        variant.append((f"te{known.t2w_te:g}", f"--t2w-te {known.t2w_te:g}"))
    if known.age != str(AGE):
        variant.append((f"age{known.age.replace('/', '')}", f"--age {known.age}"))
    name = "_".join(["icbm_pairs", *(part for part, _ in variant)])
    command = COMMAND
    if variant:
        command += f" ICBM_PAIRS_ARGS='{' '.join(argument for _, argument in variant)}'"
    return split_experiment(arguments, split="internal", name=name, doc=__doc__,
                            tasks=TASKS, slices=0, command=command)  # fmt: skip


def _age(text: str) -> str:
    """An age in years for participants.tsv, or ``n/a``."""
    if text == "n/a":
        return text
    try:
        years = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an age in years or n/a, got {text!r}") from None
    return f"{years:g}"


if __name__ == "__main__":
    main()
