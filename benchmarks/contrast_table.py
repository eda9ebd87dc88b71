"""The simulator's tissue contrast for every packaged protocol, next to real images' ranges.

    .venv/bin/python benchmarks/contrast_table.py

For each packaged default protocol at 1.5 T and 3 T and each library protocol: the sequence
family, the pure-tissue GM/WM, CSF/WM and vein/WM ratios of the simulator's signal equations
(``tumsyn.simulate.contrast``), the range real images of that family show
(``contrast_ranges.yaml``), how well that range is known (measured, derived, estimate) and what
departs from it. Orderings and measured/derived ranges are enforced by the tests; estimated
bands are only reported here. Writes benchmarks/results/contrast_table.json; the table in
docs/calibration.md is regenerated from it by
``scripts/eval_tables.py --readme docs/calibration.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report
from tumsyn.metadata import load_protocols
from tumsyn.simulate.contrast import (
    contrast_family,
    contrast_problems,
    contrast_ranges,
    pure_tissue_ratios,
)


def rows() -> list[dict]:
    protocols = [
        ("default", p.name, p.metadata.replace(field_strength=field))
        for p in load_protocols("default")
        for field in (1.5, 3.0)
    ] + [("library", p.name, p.metadata) for p in load_protocols("library")]
    table = []
    for source, name, metadata in protocols:
        family = contrast_family(metadata)
        expected = contrast_ranges()[(family, float(metadata.field_strength))]
        ratios = pure_tissue_ratios(metadata)
        problems = contrast_problems(metadata, estimates=True)
        table.append({
            "protocol": f"{source} {name} {metadata.modality}",
            "field (T)": f"{metadata.field_strength:g}",
            "family": family,
            "GM/WM": round(ratios["GM/WM"], 2),
            "real GM/WM": "{:g}-{:g}".format(*expected.gm_wm),
            "CSF/WM": round(ratios["CSF/WM"], 2),
            "real CSF/WM": "{:g}-{:g}".format(*expected.csf_wm),
            "VEIN/WM": round(ratios["VEIN/WM"], 2),
            "real VEIN/WM": "{:g}-{:g}".format(*expected.vein_wm) if expected.vein_wm else "-",
            "real order": " > ".join(expected.order) or "-",
            "evidence": expected.evidence,
            "departs": "; ".join(problems) or "-",
        })  # fmt: skip
    return table


def main() -> None:
    caption = ("pure-tissue ratios of the simulator's signal equations vs real images' ranges; "
               "orderings and measured/derived ranges are enforced by the tests")  # fmt: skip
    report("contrast_table", rows(), {"command": "python benchmarks/contrast_table.py",
                                      "caption": caption})  # fmt: skip


if __name__ == "__main__":
    main()
