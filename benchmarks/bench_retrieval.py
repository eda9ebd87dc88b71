"""Stage-1 retrieval quality: does the model find an image's prompt, and its modality?

    .venv/bin/python benchmarks/bench_retrieval.py --checkpoint runs/bmlip/model.safetensors \\
        --data bids/ [--candidates 10] [--seed 0] [--spacing 2]

Image->text: top-1 among the true prompt and nine others of the data set (seeded); image->modality:
top-1 among the seven default protocols' prompts. Chance (0.1, 1/7) is printed beside each. Use
held-out subjects: images the model was trained on measure memory, not generalisation.
Prints a table and writes benchmarks/results/retrieval.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report
from tumsyn.data import load_index
from tumsyn.evaluate.retrieval import load_bmlip, recorded_spacing, retrieval_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="stage-1 checkpoint")
    parser.add_argument("--data", type=Path, required=True, help="BIDS folder or .csv manifest")
    parser.add_argument("--candidates", type=int, default=10, help="prompts per image")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn candidates")
    parser.add_argument(
        "--spacing", type=float, help="training mm (default: recorded in the checkpoint)"
    )
    parser.add_argument("--cache", type=Path, help="folder for normalised volumes")
    args = parser.parse_args()
    model = load_bmlip(args.checkpoint)
    scores = retrieval_scores(
        model,
        load_index(args.data),
        candidates=args.candidates,
        seed=args.seed,
        spacing=recorded_spacing(args.checkpoint) if args.spacing is None else args.spacing,
        cache=args.cache,
    )
    report("retrieval", scores.rows())


if __name__ == "__main__":
    main()
