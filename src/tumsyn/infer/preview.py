"""Live preview: one plane of the output, re-synthesized quickly each time the prompt changes.

An implicit decoder answers any set of coordinates, so a viewer need not wait for a whole volume
to see what a new TE or TI does: :class:`PlanePreview` decodes only the output voxels of one
plane, from only the patches that reach it (``synthesize_volume(plane=...)``). The patch encoder's
features do not depend on the prompt, so they are computed once per patch of the source and kept
(up to a memory budget); a new prompt costs only the text-conditioning and the decoder. The
plane is exactly that plane of :meth:`Synthesizer.synthesize_volume`'s output for the same
target.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch

from tumsyn.infer.synthesizer import Synthesizer
from tumsyn.io import Grid, Volume, target_grid
from tumsyn.metadata import ImagingMetadata

__all__ = ["FeatureCache", "PlanePreview"]


def _digest(patch: torch.Tensor) -> bytes:
    """A patch's identity: its content (the same source voxels give the same features)."""
    return hashlib.blake2b(patch.cpu().numpy().tobytes(), digest_size=16).digest()


class FeatureCache:
    """The encoder's features of the patches seen so far, by content, least recently used out.

    Args:
        encode: the network's patch encoder ``(B, 1, P, P, P) -> (B, C, P, P, P)``.
        max_bytes: the most memory the kept features may take.
    """

    def __init__(self, encode, max_bytes: int = 1 << 30) -> None:
        self.encode, self.max_bytes = encode, int(max_bytes)
        self._kept: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        keys = [_digest(patch) for patch in patches]
        found = {n: self._kept[key] for n, key in enumerate(keys) if key in self._kept}
        for n in found:
            self._kept.move_to_end(keys[n])
        missing = [n for n in range(len(keys)) if n not in found]
        if missing:
            for n, features in zip(missing, self.encode(patches[missing]), strict=True):
                found[n] = features
                self._keep(keys[n], features)
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        return torch.stack([found[n] for n in range(len(keys))])

    def _keep(self, key: bytes, features: torch.Tensor) -> None:
        self._kept[key] = features
        self._bytes += features.numel() * features.element_size()
        while self._bytes > self.max_bytes and len(self._kept) > 1:
            _, dropped = self._kept.popitem(last=False)
            self._bytes -= dropped.numel() * dropped.element_size()


class PlanePreview:
    """One source, any number of quick single-plane syntheses.

    Args:
        synthesizer: the loaded model and its options.
        volume: the source.
        input_modality: the source's modality, if known (else guessed as
            :meth:`Synthesizer.synthesize_volume` does).
        max_cache_bytes: memory for the source's patch features, per network that reads it (a
            routed model's target specialists have encoders of their own).

    Example:
        >>> preview = PlanePreview(synth, volume)                      # doctest: +SKIP
        >>> plane = preview.plane(synth.target("FLAIR", te=90), axis=2, index=40)  # doctest: +SKIP
    """

    def __init__(
        self,
        synthesizer: Synthesizer,
        volume: Volume,
        *,
        input_modality: str | None = None,
        max_cache_bytes: int = 1 << 30,
    ) -> None:
        self.synthesizer, self.volume = synthesizer, volume
        guess = synthesizer.modality_guess(volume, input_modality)  # as the whole volume is read
        self.input_modality = input_modality if guess is None else guess.modality
        self.max_cache_bytes = max_cache_bytes
        self._caches: dict[torch.nn.Module, FeatureCache] = {}

    def cache_for(self, metadata: ImagingMetadata) -> FeatureCache:
        """The feature cache of the network that answers ``metadata`` from this source."""
        synth = self.synthesizer.pipeline.synth
        network = synth.for_input(self.input_modality, str(metadata.modality))
        if network not in self._caches:
            self._caches[network] = FeatureCache(network.gen_feat, self.max_cache_bytes)
        return self._caches[network]

    def output_grid(self, metadata: ImagingMetadata) -> Grid:
        """The grid the whole synthesized volume would have."""
        return target_grid(self.volume.grid, metadata.voxel_size)

    def plane(self, metadata: ImagingMetadata, axis: int, index: int) -> np.ndarray:
        """Plane ``index`` along array axis ``axis`` of the output grid, in the source's units.

        Raises:
            ConfigError, MetadataError: an incomplete target or an unusable prompt.
            IndexError: ``index`` outside the output grid.
        """
        shape = self.output_grid(metadata).shape
        if not 0 <= index < shape[axis]:
            raise IndexError(
                f"plane {index} is outside the output's {shape[axis]} along axis {axis}"
            )
        result = self.synthesizer.synthesize_arrays(
            self.volume, metadata, plane=(axis, index), encode=self.cache_for(metadata),
            input_modality=self.input_modality,
        )  # fmt: skip
        return np.take(result.data, index, axis=axis)
