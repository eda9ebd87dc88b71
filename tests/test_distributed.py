"""A process's place among torchrun's processes, read from the environment torchrun sets."""

from __future__ import annotations

import pytest
import torch

from tumsyn.distributed import World, environment_world
from tumsyn.errors import ConfigError


def test_without_torchrun_a_process_is_a_world_of_one(monkeypatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    world = environment_world("cpu")
    assert world == World(rank=0, size=1, device=torch.device("cpu")) and world.is_main


def test_under_torchrun_rank_and_size_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = environment_world("cpu")
    assert (world.rank, world.size, world.is_main) == (3, 4, False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_before_any_work() -> None:
    with pytest.raises(ConfigError, match="no CUDA device"):
        environment_world("cuda")
