"""The ``tumsyn`` command: one thin function per subcommand (parse, call the library, report).

User errors (:class:`tumsyn.errors.TumsynError`, bad arguments) print one line to stderr and exit
with code 2; ``--debug`` shows the traceback instead. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from tumsyn.errors import MetadataError, TumsynError

__all__ = ["main"]

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what is wrong, and where the help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _examples(*lines: str) -> str:
    return "examples:\n" + textwrap.indent("\n".join(lines), "  ")


def _add_metadata_flags(
    parser: argparse.ArgumentParser, modality_flags: Sequence[str] = ("--modality",)
) -> None:
    group = parser.add_argument_group("imaging metadata (override values from the sources above)")
    group.add_argument(
        *modality_flags,
        dest="modality",
        help="T1w, T2w, FLAIR, SWI, T2star, PD or T1CE (or an alias)",
    )
    group.add_argument("--tr", type=float, metavar="MS", help="repetition time in ms")
    group.add_argument("--te", type=float, metavar="MS", help="echo time in ms")
    group.add_argument("--ti", type=float, metavar="MS", help="inversion time in ms")
    group.add_argument("--fa", metavar="DEG", help="flip angle in degrees, or a word such as T2var")
    group.add_argument("--age", type=float, metavar="YEARS")
    group.add_argument("--sex", help="F or M")
    group.add_argument("--field", type=float, metavar="T", help="field strength in tesla")
    group.add_argument("--manufacturer", metavar="NAME", help="scanner vendor, e.g. Siemens")
    group.add_argument(
        "--voxel-size", type=float, nargs=3, metavar=("X", "Y", "Z"), help="voxel size in mm"
    )


def _metadata_flags(args: argparse.Namespace) -> dict:
    return {
        "modality": args.modality,
        "tr": args.tr,
        "te": args.te,
        "ti": args.ti,
        "flip_angle": args.fa,
        "age": args.age,
        "sex": args.sex,
        "field_strength": args.field,
        "manufacturer": args.manufacturer,
        "voxel_size": tuple(args.voxel_size) if args.voxel_size else None,
    }


Commands = argparse._SubParsersAction


def _command(
    commands: Commands, name: str, handler: Callable, help: str, *examples: str
) -> argparse.ArgumentParser:
    """A subcommand with its help, examples and handler."""
    sub = commands.add_parser(
        name,
        help=help.replace("%", "%%"),  # argparse %-formats the command list's help strings
        description=help,
        epilog=_examples(*examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(function=handler)
    return sub


# --- prompt ---------------------------------------------------------------------------------


def add_prompt(commands: Commands) -> None:
    prompt = _command(
        commands,
        "prompt",
        cmd_prompt,
        "Print the TUMSyn prompt for imaging metadata (flags, a BIDS sidecar or a DICOM file).",
        "tumsyn prompt --modality FLAIR --tr 9000 --te 81 --ti 2500 --fa 150 --age 70 --sex F \\",
        "    --field 3 --manufacturer Siemens --voxel-size 1 1 3",
        "tumsyn prompt --sidecar sub-01/anat/sub-01_T2w.json --age 34 --sex F",
        "tumsyn prompt --dicom IM0001.dcm --modality T2w",
        'tumsyn prompt --text "$(cat old_prompt.txt)" --modality PD   # check/edit a prompt',
    )
    source = prompt.add_argument_group("metadata sources")
    source.add_argument(
        "--text", metavar="PROMPT", help="an existing prompt to check, normalise or edit"
    )
    source.add_argument(
        "--sidecar", type=Path, metavar="JSON", help="BIDS JSON sidecar (times in seconds)"
    )
    source.add_argument(
        "--participants",
        type=Path,
        metavar="TSV",
        help="BIDS participants.tsv for age and sex (default: found from the sidecar's BIDS root)",
    )
    source.add_argument("--dicom", type=Path, metavar="FILE", help="a DICOM file of the series")
    source.add_argument(
        "--image", type=Path, metavar="NIFTI", help="NIfTI image whose header gives the voxel size"
    )
    _add_metadata_flags(prompt)


def cmd_prompt(args: argparse.Namespace) -> int:
    from tumsyn.infer.target import checked_prompt
    from tumsyn.io import load_nifti
    from tumsyn.metadata import (
        ImagingMetadata,
        find_participant,
        metadata_from_dicom,
        metadata_from_sidecar,
        parse_prompt,
        prompt_voxel_size,
    )

    given = [f"--{name}" for name in ("text", "sidecar", "dicom") if getattr(args, name)]
    if len(given) > 1:
        raise TumsynError(
            f"give only one of --text, --sidecar and --dicom, not {' and '.join(given)}"
        )
    metadata = ImagingMetadata()
    if args.text:
        metadata = parse_prompt(args.text)
    elif args.dicom:
        metadata = metadata_from_dicom(args.dicom)
    elif args.sidecar:
        participant = find_participant(args.sidecar, args.participants)
        metadata = metadata_from_sidecar(args.sidecar, participant=participant)
    elif args.participants:
        raise TumsynError("--participants needs --sidecar (the subject comes from its BIDS name)")
    if args.image and not args.voxel_size:
        metadata = metadata.replace(voxel_size=prompt_voxel_size(load_nifti(args.image).voxel_size))
    metadata = metadata.replace(**_metadata_flags(args))
    print(checked_prompt(metadata))
    return 0


# --- info -----------------------------------------------------------------------------------


def add_info(commands: Commands) -> None:
    info = _command(
        commands,
        "info",
        cmd_info,
        "Summarise a NIfTI image, the prompt its BIDS sidecar describes, and the network the "
        "default model reads it with.",
        "tumsyn info sub-01/anat/sub-01_T1w.nii.gz",
    )
    info.add_argument("image", type=Path, help="a 3D NIfTI image (.nii or .nii.gz)")
    info.add_argument(
        "--participants", type=Path, metavar="TSV", help="BIDS participants.tsv for age and sex"
    )
    info.add_argument("--nan-to-zero", action="store_true", help="treat NaN/Inf voxels as 0")


def cmd_info(args: argparse.Namespace) -> int:
    from tumsyn.image_info import summarise_image

    summary = summarise_image(
        args.image, participants=args.participants, nan_to_zero=args.nan_to_zero
    )
    rows = summary.rows()
    width = max(len(name) for name, _ in rows) + 1
    for name, value in rows:
        print(f"{name + ':':<{width}} {value}")
    return 0


# --- version --------------------------------------------------------------------------------


def add_version(commands: Commands) -> None:
    _command(
        commands,
        "version",
        cmd_version,
        "Print the versions of tumsyn and its main libraries.",
        "tumsyn version",
    )


def cmd_version(args: argparse.Namespace) -> int:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from tumsyn import __version__

    print(f"tumsyn {__version__}")
    for package in ("torch", "nibabel", "numpy", "tokenizers", "pydicom"):
        try:
            print(f"  {package} {version(package)}")
        except PackageNotFoundError:
            print(f"  {package} not installed")
    print(f"  python {platform.python_version()}")
    return 0


# --- simulate -------------------------------------------------------------------------------


def add_simulate(commands: Commands) -> None:
    simulate = _command(
        commands,
        "simulate",
        cmd_simulate,
        "Simulate a BIDS data set of virtual subjects scanned with MR protocols.",
        "tumsyn simulate /tmp/sim --subjects 20 --seed 0 --workers 2",
        "tumsyn simulate /tmp/sim --subjects 5 --protocols library --montage sim.png",
        "tumsyn simulate /tmp/sim --subjects 2 --voxel-size 2 --protocols my_protocols.yaml",
    )
    simulate.add_argument("out", type=Path, help="output folder (new or empty)")
    simulate.add_argument("--subjects", type=int, default=10, metavar="N", help="default: 10")
    simulate.add_argument("--seed", type=int, default=0, help="same seed, same data (default: 0)")
    simulate.add_argument(
        "--protocols",
        default="default",
        metavar="FILE",
        help="protocol YAML file, or a packaged set: default (7 contrasts at 1 mm), library",
    )
    simulate.add_argument(
        "--voxel-size",
        type=float,
        nargs="+",
        metavar="MM",
        help="override every protocol's voxel size (one number or three)",
    )
    simulate.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="K",
        help="processes (default: one per available CPU core, at most one per subject)",
    )
    simulate.add_argument(
        "--snr", type=float, nargs=2, default=(25.0, 60.0), metavar=("LOW", "HIGH"),
        help="signal-to-noise range, drawn per image (default: 25 60)",
    )  # fmt: skip
    simulate.add_argument(
        "--enhancing-fraction",
        type=float,
        default=0.3,
        metavar="P",
        help="share of subjects with an enhancing lesion (default: 0.3)",
    )
    simulate.add_argument(
        "--oblique",
        type=float,
        default=0.0,
        metavar="DEG",
        help="rotate each image grid by up to DEG degrees about each axis (default: 0)",
    )
    simulate.add_argument(
        "--montage", type=Path, metavar="PNG", help="also write a montage of the first subject"
    )
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")


def _available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may use
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cmd_simulate(args: argparse.Namespace) -> int:
    from tumsyn.metadata import load_protocols
    from tumsyn.simulate import CohortSettings, simulate_dataset
    from tumsyn.simulate.bids import save_subject_montage

    settings = CohortSettings(
        subjects=args.subjects,
        seed=args.seed,
        enhancing_fraction=args.enhancing_fraction,
        snr=tuple(args.snr),
        oblique_deg=args.oblique,
    )
    protocols = load_protocols(args.protocols)
    voxel_size = None
    if args.voxel_size is not None:
        if len(args.voxel_size) not in (1, 3):
            raise MetadataError("--voxel-size takes one number (isotropic) or three")
        voxel_size = args.voxel_size * 3 if len(args.voxel_size) == 1 else args.voxel_size
    root = simulate_dataset(
        args.out,
        settings,
        protocols,
        voxel_size=voxel_size,
        workers=args.workers or min(_available_cores(), settings.subjects),
        progress=not args.quiet,
    )
    print(f"wrote {settings.subjects} subjects x {len(protocols)} protocols to {root}")
    if args.montage is not None:
        print(f"montage: {save_subject_montage(root, args.montage)}")
    return 0


# --- synthesize and synthesize-bids ---------------------------------------------------------


def _add_synthesis_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", metavar="TEXT", help="the full target prompt")
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="pipeline checkpoint, or a bundled model's name (default: tumsyn-v2); for the "
        "published official "
        "weights run: tumsyn convert-official checkpoint.pt OUT.safetensors --text "
        "checkpoint_CLIP.pt",
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument(
        "--patch-size", type=int, metavar="N", help="patch side in input voxels (default: the "
        "checkpoint's recommendation, else 32; 60 for converted official checkpoints)"
    )  # fmt: skip
    parser.add_argument(
        "--overlap", type=int, metavar="N", help="overlap of neighbouring patches (default: the "
        "checkpoint's recommendation, else 8)"
    )  # fmt: skip
    parser.add_argument("--batch", type=int, default=4, metavar="N", help="patches per call")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="auto (default): bf16 on GPUs, fp32 on the CPU; bf16 on a CPU with AVX512-BF16 "
        "or AMX is faster for paper-size networks, with small deviations",
    )
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch")
    parser.add_argument("--nan-to-zero", action="store_true", help="treat NaN/Inf as 0")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _synthesis_options(args: argparse.Namespace):
    """The validated :class:`SynthesisOptions` of the flags (and the thread count, applied)."""
    from tumsyn.infer.options import SynthesisOptions

    names = ("device", "patch_size", "overlap", "batch", "precision", "nan_to_zero")
    options = SynthesisOptions(**{name: getattr(args, name) for name in names})
    _apply_threads(args.threads)
    return options


def _apply_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU threads."""
    if threads is not None:
        if threads < 1:
            raise TumsynError(f"--threads must be at least 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


def add_synthesize(commands: Commands) -> None:
    synthesize = _command(
        commands,
        "synthesize",
        cmd_synthesize,
        "Synthesize a contrast from a 3D brain image and a target prompt.",
        "tumsyn synthesize sub-01_T1w.nii.gz -o sub-01_FLAIR.nii.gz --modality FLAIR",
        "tumsyn synthesize t1.nii.gz -o t2.nii.gz --modality T2w --voxel-size 1 1 1 --field 3",
        'tumsyn synthesize t1.nii.gz -o pd.nii.gz --prompt "Age: 70; Gender: F; ..."',
        "tumsyn synthesize scan.nii.gz -o t1.nii.gz --modality T1w --input-modality T2w",
    )
    synthesize.add_argument("input", type=Path, help="source image (3D NIfTI)")
    synthesize.add_argument("-o", "--output", type=Path, required=True, help="output .nii.gz")
    synthesize.add_argument(
        "--input-modality", metavar="NAME", help="the input's modality (default: from its "
        "file name, sub-01_T2w.nii.gz, else guessed from its intensities); a model with a "
        "network per input modality reads the input with that modality's network (one it has "
        "no network for, e.g. T2star, with the network its intensities point to)"
    )  # fmt: skip
    _add_synthesis_flags(synthesize)
    _add_metadata_flags(synthesize)


def cmd_synthesize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tumsyn.infer.files import check_output, synthesize_file
    from tumsyn.infer.synthesizer import Synthesizer
    from tumsyn.infer.target import checked_prompt, resolve_target
    from tumsyn.metadata import canonical_modality

    options = _synthesis_options(args)
    check_output(args.output, args.input)
    if args.input_modality is not None:
        canonical_modality(args.input_modality)  # a bad name fails before the model loads
    target = resolve_target(args.prompt, fields=_metadata_flags(args), source=args.input)
    checked_prompt(target)  # a prompt too long fails before the model loads
    synthesizer = Synthesizer.from_checkpoint(args.checkpoint, options=options)
    print(f"prompt: {checked_prompt(synthesizer.model_target(target))}")
    _note_left_out(synthesizer, target, "synthesize")

    def bar(batches):
        return tqdm(batches, unit="batch", desc="synthesize", disable=args.quiet)

    result = synthesize_file(synthesizer, args.input, args.output, target, progress=bar,
                             input_modality=args.input_modality)  # fmt: skip
    for warning in result.warnings:
        print(f"tumsyn synthesize: warning: {warning}: the output is an extrapolation",
              file=sys.stderr)  # fmt: skip
    print(f"wrote {result.output} and {result.sidecar.name}")
    return 0


def _note_left_out(synthesizer, target, command: str) -> None:
    """Say on stderr which of the user's fields the model leaves out of its prompt."""
    left_out = synthesizer.left_out(target)
    if left_out:
        print(f"tumsyn {command}: note: {synthesizer.name} leaves {' and '.join(left_out)} out "
              "of its prompts (its training data carry no contrast for them; see its model "
              "card)", file=sys.stderr)  # fmt: skip


def add_synthesize_bids(commands: Commands) -> None:
    synthesize_bids = _command(
        commands,
        "synthesize-bids",
        cmd_synthesize_bids,
        "Synthesize a contrast from every T1w (or --source) image of a BIDS data set into a "
        "BIDS-derivatives folder (sub-*/[ses-*/]anat/*_desc-tumsyn_<suffix>.nii.gz + sidecars).",
        "tumsyn synthesize-bids bids/ --target FLAIR -o bids/derivatives/tumsyn-flair",
        "tumsyn synthesize-bids bids/ --target T2w --source T1CE --voxel-size 1 1 1 -o t2/",
        "torchrun --nproc_per_node=2 $(which tumsyn) synthesize-bids bids/ --target PD -o pd/",
    )
    synthesize_bids.add_argument("bids_dir", type=Path, metavar="BIDS_DIR", help="BIDS folder")
    synthesize_bids.add_argument(
        "-o", "--output", type=Path, required=True, metavar="DERIVATIVES_DIR",
        help="derivatives folder (made if missing)",
    )  # fmt: skip
    synthesize_bids.add_argument(
        "--source", default="T1w", metavar="SUFFIX",
        help="images to start from: a modality (T1w, T1CE, T2w...) or any BIDS suffix "
        "(default: T1w, without contrast agent)",
    )  # fmt: skip
    synthesize_bids.add_argument(
        "--overwrite", action="store_true", help="redo outputs that exist (default: skip them)"
    )
    _add_synthesis_flags(synthesize_bids)
    _add_metadata_flags(synthesize_bids, ("--target", "--modality"))


def cmd_synthesize_bids(args: argparse.Namespace) -> int:
    from tumsyn.infer.bids import synthesize_bids

    options = _synthesis_options(args)
    if args.modality is None and args.prompt is None:
        raise TumsynError("say which contrast to make: --target (e.g. FLAIR) or --prompt")
    summary = synthesize_bids(
        args.bids_dir,
        args.output,
        args.prompt,
        fields=_metadata_flags(args),
        source=args.source,
        checkpoint=args.checkpoint,
        options=options,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    rank = f"rank {summary.rank}/{summary.world_size}: " if summary.world_size > 1 else ""
    for warning, count in sorted(summary.warnings.items()):
        print(f"tumsyn synthesize-bids: warning: {rank}{warning}: the output is an extrapolation "
              f"({count} images)", file=sys.stderr)  # fmt: skip
    if summary.left_out:
        fields = " and ".join(summary.left_out)
        print(f"tumsyn synthesize-bids: note: {rank}{summary.model} leaves {fields} out of its "
              "prompts (see its model card); the sidecars' SynthesisPromptLeftOut keep the asked "
              "values", file=sys.stderr)  # fmt: skip
    for _, message in summary.failed:
        print(f"tumsyn synthesize-bids: failed: {rank}{message}", file=sys.stderr)
    written, skipped, failed = len(summary.written), len(summary.skipped), len(summary.failed)
    images = f"{summary.jobs} image" + ("" if summary.jobs == 1 else "s")
    hint = " (--overwrite redoes them)" if skipped else ""
    print(f"{rank}{images}: wrote {written}, skipped {skipped} existing{hint}, failed {failed}; "
          f"outputs in {args.output}")  # fmt: skip
    if summary.failed:
        names = ", ".join(str(path.name) for path, _ in summary.failed)
        raise TumsynError(f"{rank}{failed} of {images} failed: {names}")
    return 0


# --- evaluate -------------------------------------------------------------------------------


def add_evaluate(commands: Commands) -> None:
    evaluate = _command(
        commands,
        "evaluate",
        cmd_evaluate,
        "Compare synthesized images with acquired ones: PSNR, SSIM, MAE (and tissue contrast "
        "errors) per image, with the mean and a bootstrap 95% interval.",
        "tumsyn evaluate --pred flair_syn.nii.gz --truth flair.nii.gz --mask brain.nii.gz",
        "tumsyn evaluate --pred bids/derivatives/tumsyn-flair --truth bids --out results.json \\",
        "    --csv rows.csv --seed 0",
        "tumsyn evaluate --pred t2_syn.nii.gz --truth t2.nii.gz \\",
        "    --tissues gm.nii.gz wm.nii.gz csf.nii.gz",
    )
    evaluate.add_argument(
        "--pred", type=Path, required=True, metavar="PATH", help="a prediction, or a folder"
    )
    evaluate.add_argument(
        "--truth", type=Path, required=True, metavar="PATH",
        help="the acquired image, or a (BIDS) folder; folders pair by BIDS entities, ignoring desc",
    )  # fmt: skip
    evaluate.add_argument(
        "--mask", type=Path, metavar="NIFTI", help="brain mask (default: truth's non-zero voxels)"
    )
    evaluate.add_argument(
        "--tissues", type=Path, nargs=3, metavar=("GM", "WM", "CSF"),
        help="the truth's tissue label or probability maps: GM/WM and CSF/WM contrast errors",
    )  # fmt: skip
    evaluate.add_argument("--out", type=Path, metavar="JSON", help="write rows and summary as JSON")
    evaluate.add_argument("--csv", type=Path, metavar="CSV", help="write one row per image as CSV")
    evaluate.add_argument(
        "--seed", type=int, default=0, help="seed of the bootstrap interval (default: 0)"
    )
    evaluate.add_argument(
        "--erode", type=int, default=0, metavar="N",
        help="score only voxels N voxels inside the brain mask (default 0): the paper's "
        "normalisation maps each image's minimum in the mask to 0, so dark edge voxels move "
        "every score",
    )  # fmt: skip


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tumsyn.evaluate.report import evaluate
    from tumsyn.io import check_output_path

    inputs = [args.pred, args.truth, *([args.mask] if args.mask else []), *(args.tissues or [])]
    outputs = [check_output_path(path, *inputs) for path in (args.out, args.csv) if path]
    if len(outputs) == 2 and outputs[0].resolve() == outputs[1].resolve():
        raise TumsynError(f"{args.out}: --out and --csv must be different files")
    report = evaluate(args.pred, args.truth, mask=args.mask, tissues=args.tissues, seed=args.seed,
                      erode=args.erode)  # fmt: skip
    for line in report.table():
        print(line)
    if args.out is not None:
        print(f"wrote {report.save_json(args.out)}")
    if args.csv is not None:
        print(f"wrote {report.save_csv(args.csv)}")
    return 0


# --- retrieve -------------------------------------------------------------------------------


def add_retrieve(commands: Commands) -> None:
    retrieve = _command(
        commands,
        "retrieve",
        cmd_retrieve,
        "Rank candidate prompts for an image with a stage-1 (BMLIP) model: softmax over the "
        "candidates of the scaled cosine similarity (the paper's Supplementary Fig. 1).",
        "tumsyn retrieve sub-01_FLAIR.nii.gz --modalities --checkpoint bmlip/model.safetensors",
        "tumsyn retrieve t1.nii.gz --prompts candidates.txt --checkpoint model.safetensors \\",
        "    --top 5 --json ranking.json",
    )
    retrieve.add_argument("image", type=Path, help="a 3D NIfTI image (.nii or .nii.gz)")
    candidates = retrieve.add_mutually_exclusive_group(required=True)
    candidates.add_argument(
        "--prompts", type=Path, metavar="FILE",
        help="candidate prompts, one per line (blank lines and # comments skipped)",
    )  # fmt: skip
    candidates.add_argument(
        "--modalities", action="store_true",
        help="the seven default protocols' prompts at the image's voxel size",
    )  # fmt: skip
    retrieve.add_argument(
        "--checkpoint", type=Path, required=True, metavar="FILE",
        help="stage-1 checkpoint (tumsyn train-text ... model.safetensors)",
    )  # fmt: skip
    retrieve.add_argument(
        "--top", type=int, default=10, metavar="N", help="rows to print (default: 10)"
    )
    retrieve.add_argument(
        "--spacing", type=float, metavar="MM",
        help="voxel size the model was trained at (default: what the checkpoint records, "
        "else stage-1 training's default)",
    )  # fmt: skip
    retrieve.add_argument("--json", type=Path, metavar="FILE", help="write the whole ranking")


def cmd_retrieve(args: argparse.Namespace) -> int:
    import math

    from tumsyn.evaluate.retrieval import (
        load_bmlip,
        modality_prompts,
        rank_prompts,
        read_prompts,
        recorded_spacing,
    )
    from tumsyn.io import check_output_path, read_grid, save_json

    # Options and output checks first: a mistake costs no model loading.
    if args.top < 1:
        raise TumsynError(f"--top must be at least 1, got {args.top}")
    if args.spacing is not None and not (math.isfinite(args.spacing) and args.spacing > 0):
        raise TumsynError(f"--spacing must be a positive number of mm, got {args.spacing}")
    if args.json is not None:
        inputs = [args.image, args.checkpoint, *([args.prompts] if args.prompts else [])]
        check_output_path(args.json, *inputs)
    model = load_bmlip(args.checkpoint)
    spacing = recorded_spacing(args.checkpoint) if args.spacing is None else args.spacing
    if args.modalities:
        prompts = modality_prompts(read_grid(args.image).voxel_size)
    else:
        prompts = read_prompts(args.prompts)
    ranking = rank_prompts(model, args.image, prompts, spacing=spacing)
    print(f"{'rank':>4}  {'probability':>11}  prompt")
    for rank, (prompt, probability) in enumerate(ranking[: args.top], start=1):
        print(f"{rank:>4}  {probability:>11.4f}  {prompt}")
    if args.json is not None:
        rows = [
            {"rank": rank, "probability": probability, "prompt": prompt}
            for rank, (prompt, probability) in enumerate(ranking, start=1)
        ]
        content = {"image": str(args.image), "checkpoint": str(args.checkpoint),
                   "spacing": spacing, "ranking": rows}  # fmt: skip
        print(f"wrote {save_json(args.json, content)}")
    return 0


# --- montage --------------------------------------------------------------------------------


def add_montage(commands: Commands) -> None:
    montage = _command(
        commands,
        "montage",
        cmd_montage,
        "Write a PNG of images side by side (axial, coronal, sagittal; world orientation).",
        "tumsyn montage compare.png sub-01_T1w.nii.gz sub-01_FLAIR.nii.gz",
    )
    montage.add_argument("out", type=Path, help="output .png")
    montage.add_argument("images", type=Path, nargs="+", help="3D NIfTI images")
    montage.add_argument("--title", help="figure title")


def cmd_montage(args: argparse.Namespace) -> int:
    from tumsyn.figures import save_montage
    from tumsyn.io import check_output_path, load_nifti
    from tumsyn.metadata import modality_from_bids_name

    if args.out.suffix.lower() != ".png":
        raise TumsynError(f"{args.out}: the montage is a PNG; give a name ending in .png")
    check_output_path(args.out, *args.images)
    images = []
    for path in args.images:
        volume = load_nifti(path)
        label = modality_from_bids_name(path.name) or path.name.split(".")[0]
        images.append((label, volume.data, volume.affine))
    print(f"wrote {save_montage(args.out, images, title=args.title)}")
    return 0


# --- models and convert-official ------------------------------------------------------------


def add_models(commands: Commands) -> None:
    models = _command(
        commands,
        "models",
        cmd_models,
        "List the model configurations with parameter counts and FLOPs, and the bundled models'"
        " networks.",
        "tumsyn models",
        "tumsyn models --patch 32",
    )
    models.add_argument(
        "--patch", type=int, default=64, metavar="N", help="synthesis patch side (default: 64)"
    )


def cmd_models(args: argparse.Namespace) -> int:
    from tumsyn.models.summary import summarise_configs

    if not 1 <= args.patch <= 512:
        raise TumsynError(f"--patch must be between 1 and 512, got {args.patch}")
    rows = summarise_configs(patch=args.patch)
    _print_table(
        ("config", "stage", "parameters", "GFLOP", "for one input"),
        [(r.name, r.stage, f"{r.parameters:,}", f"{r.gflops:,.1f}", r.input) for r in rows],
    )
    print()
    _print_table(("bundled model", "networks (input or input:target)"), _bundled_networks())
    return 0


def _bundled_networks() -> list[tuple[str, str]]:
    """Each bundled model and the networks it routes inputs to (fallback marked): the input
    networks first, then the specialists (``INPUT:TARGET``), each in the order packaged."""
    from tumsyn.infer.loading import BUNDLED_CHECKPOINTS, pipeline_networks, read_pipeline_metadata

    rows = []
    for name in BUNDLED_CHECKPOINTS:
        keys, fallback = pipeline_networks(read_pipeline_metadata(name))
        keys = sorted(keys, key=lambda key: ":" in key)  # stable: packaged order within each
        marked = [f"{key} (fallback)" if key == fallback else key for key in keys]
        rows.append((name, ", ".join(marked) or "one network for every input"))
    return rows


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def add_convert_official(commands: Commands) -> None:
    convert = _command(
        commands,
        "convert-official",
        cmd_convert_official,
        "Convert published TUMSyn .pt/.pth checkpoints into a tumsyn safetensors checkpoint.",
        "tumsyn convert-official checkpoint.pt tumsyn-official.safetensors "
        "--text checkpoint_CLIP.pt",
        "tumsyn synthesize t1.nii.gz -o flair.nii.gz --modality FLAIR \\",
        "    --checkpoint tumsyn-official.safetensors",
        "tumsyn convert-official checkpoint_CLIP.pt bmlip-official.safetensors   # stage 1 alone",
        "tumsyn convert-official checkpoint.pt synth-official.safetensors        # stage 2 alone",
    )
    convert.add_argument(
        "source", type=Path, help="official .pt/.pth file: stage 2 (synthesis) or stage 1 (CLIP)"
    )
    convert.add_argument("target", type=Path, help="output .safetensors file")
    convert.add_argument(
        "--text",
        type=Path,
        metavar="CLIP.pt",
        help="the official stage-1 checkpoint (checkpoint_CLIP.pt): write one pipeline of its "
        "text encoder (only the text weights are read) and SOURCE, the stage-2 network, for "
        "tumsyn synthesize --checkpoint",
    )


def cmd_convert_official(args: argparse.Namespace) -> int:
    from tumsyn.models.official import convert_official

    target = convert_official(args.source, args.target, text=args.text)
    if args.text is not None:
        print(f"wrote {target}: use it with tumsyn synthesize --checkpoint {target}")
    else:
        print(f"wrote {target}")
    return 0


# --- train-text and train -------------------------------------------------------------------


def _add_training(commands: Commands, name: str, handler: Callable, what: str, example: str):
    command = _command(
        commands,
        name,
        handler,
        f"Train {what} from a YAML configuration.",
        f"tumsyn {name} configs/{example}.yaml",
        f"tumsyn {name} configs/{example}.yaml --resume",
        f"torchrun --nproc_per_node=2 $(which tumsyn) {name} configs/{example}.yaml",
    )
    command.add_argument("config", type=Path, help="training YAML (see configs/)")
    command.add_argument(
        "--resume", action="store_true", help="continue the run in the config's 'out' folder"
    )
    command.add_argument("--quiet", action="store_true", help="no progress bar")
    command.add_argument(
        "--stop-at",
        type=int,
        metavar="STEP",
        help="stop after this step with a checkpoint (continue later with --resume)",
    )


def add_serve(commands: Commands) -> None:
    serve = _command(
        commands,
        "serve",
        cmd_serve,
        "Synthesize and compare in the browser: upload a NIfTI or use the example, describe the "
        "target, watch the plane under the crosshair follow the prompt, synthesize and download "
        "the volume. Listens on this machine only unless --host says otherwise.",
        "tumsyn serve                      # then open http://127.0.0.1:8000/",
        "ssh -L 8000:127.0.0.1:8000 server  # from your laptop, for a server's tumsyn serve",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: this machine only)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--checkpoint", default=None, metavar="FILE",
                       help="pipeline checkpoint, or a bundled model's name (default: "
                       "tumsyn-v2)")  # fmt: skip
    serve.add_argument("--max-upload-mb", type=int, default=512, metavar="MB",
                       help="largest upload accepted (default 512)")  # fmt: skip
    serve.add_argument("--keep-minutes", type=float, default=60.0, metavar="MIN",
                       help="unused uploads and results go after this (default 60)")  # fmt: skip
    serve.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1...")
    serve.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def cmd_serve(args: argparse.Namespace) -> int:
    from tumsyn.infer.synthesizer import Synthesizer
    from tumsyn.serve import serve
    from tumsyn.serve.viewer import niivue_bundle

    if not 0 < args.port < 65536:
        raise TumsynError(f"--port {args.port}: expected 1-65535")
    if args.max_upload_mb < 1 or args.keep_minutes <= 0:
        raise TumsynError("--max-upload-mb and --keep-minutes must be positive")
    _apply_threads(args.threads)
    niivue_bundle()  # before the model loads: a missing viewer is told at once
    synthesizer = Synthesizer.from_checkpoint(args.checkpoint, device=args.device)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this machine can use "
              "the app; prefer the default and an SSH tunnel", file=sys.stderr)  # fmt: skip
    serve(synthesizer, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
          keep_minutes=args.keep_minutes)  # fmt: skip
    return 0


def add_train_text(commands: Commands) -> None:
    _add_training(
        commands, "train-text", cmd_train_text, "stage 1 (BMLIP text-image pre-training)",
        "bmlip-tiny",
    )  # fmt: skip


def add_train(commands: Commands) -> None:
    _add_training(
        commands, "train", cmd_train, "stage 2 (synthesis, frozen stage-1 text encoder)",
        "synth-tiny",
    )  # fmt: skip


def _train(args: argparse.Namespace, stage: str) -> int:
    from tumsyn.train import run

    result = run(
        args.config, stage, resume=args.resume, progress=not args.quiet, stop_at=args.stop_at
    )
    folder = result.folder
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained: {folder / 'model.safetensors'} (metrics: {folder / 'metrics.csv'})")
    return 0


def cmd_train_text(args: argparse.Namespace) -> int:
    return _train(args, "text")


def cmd_train(args: argparse.Namespace) -> int:
    return _train(args, "synthesis")


# --- the parser -----------------------------------------------------------------------------

COMMANDS: tuple[Callable[[Commands], None], ...] = (
    add_prompt,
    add_info,
    add_simulate,
    add_synthesize,
    add_synthesize_bids,
    add_evaluate,
    add_retrieve,
    add_montage,
    add_models,
    add_convert_official,
    add_serve,
    add_train_text,
    add_train,
    add_version,
)


def build_parser() -> argparse.ArgumentParser:
    from tumsyn import __version__

    parser = _Parser(
        prog="tumsyn",
        description="Text-guided universal brain MRI synthesis.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples(
            "tumsyn info sub-01_T1w.nii.gz",
            "tumsyn prompt --sidecar sub-01_T2w.json --age 34 --sex F",
        ),
    )
    parser.add_argument("--version", action="version", version=f"tumsyn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in COMMANDS:
        add(commands)
    return parser


def _show_warnings_as_lines(command: str) -> None:
    """Print the project's warnings as one line each (``tumsyn info: warning: ...``); others keep
    Python's format."""
    import warnings

    from tumsyn.errors import TumsynWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, TumsynWarning):
            print(f"tumsyn {command}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _error_line(error: TumsynError) -> str:
    """The one line a user error prints; an option is named by its flag (``--patch-size 0``)."""
    from tumsyn.errors import OptionError

    if isinstance(error, OptionError):
        return f"--{error.option.replace('_', '-')} {error.value!r}: expected {error.allowed}"
    return str(error)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USER_ERROR
    _show_warnings_as_lines(args.command)
    try:
        return args.function(args)
    except TumsynError as error:
        if args.debug:
            raise
        print(f"tumsyn {args.command}: error: {_error_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("tumsyn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): stop quietly, as Python's docs advise.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
