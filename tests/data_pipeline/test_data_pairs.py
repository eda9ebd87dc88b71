"""Stage-2 pairs: every ordered pair of co-registered images of a subject."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest

from tumsyn.data import paired_records
from tumsyn.errors import ImageError


def test_n_images_give_n_times_n_minus_1_ordered_pairs(records):
    pairs = paired_records(records)
    per_subject = Counter(r.subject for r in records)
    assert len(pairs) == sum(n * (n - 1) for n in per_subject.values()) == 2 * 7 * 6
    assert all(s.subject == t.subject and s.path != t.path for s, t in pairs)
    assert len({(s.path, t.path) for s, t in pairs}) == len(pairs)
    # Both directions of every pair.
    assert {(t.path, s.path) for s, t in pairs} == {(s.path, t.path) for s, t in pairs}


def test_a_subject_with_one_image_gives_no_pair(records):
    lonely = replace(records[0], subject="sub-lonely")
    pairs = paired_records([lonely, *records[7:]])
    assert all(lonely not in pair for pair in pairs)
    assert len(pairs) == 7 * 6
    assert paired_records([lonely]) == []


@pytest.mark.parametrize("change", ["shift", "shape"])
def test_images_on_different_grids_are_refused_naming_both(tmp_path, records, change):
    first = records[0]
    image = nib.load(first.path)
    data, affine = np.asarray(image.dataobj), image.affine.copy()
    if change == "shift":
        affine[0, 3] += 0.01  # 0.01 mm: above the 1e-3 tolerance
    else:
        data = data[:-1]
    moved = tmp_path / "moved_T2w.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), moved)
    other = replace(records[1], path=moved)
    message = "shape" if change == "shape" else "affines differ by up to 0.01 mm"
    with pytest.raises(ImageError, match=f"{first.path.name} and .*moved_T2w.nii.gz .*{message}"):
        paired_records([first, other])


def test_tiny_affine_differences_are_tolerated(tmp_path, records):
    image = nib.load(records[0].path)
    affine = image.affine.copy()
    affine[:3, 3] += 1e-4
    nudged = tmp_path / "nudged.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine), nudged)
    assert len(paired_records([records[1], replace(records[0], path=nudged)])) == 2
