"""The CUDA-on-CPU emulator against known answers (kernels in csrc/common/emu_selftest.cu)."""
import pytest
import torch

from pyadv import _C

emu = _C.emulated


@pytest.fixture(params=["forward", "reverse"])
def schedule(request):
    emu.set_schedule(request.param)
    yield request.param
    emu.set_schedule("forward")


def _data(n, seed=0):
    # Small integers: float sums are exact in any order, so answers compare with ==.
    return torch.randint(-8, 9, (n,), generator=torch.Generator().manual_seed(seed)).float()


@pytest.mark.parametrize("n", [1, 127, 128, 129, 1000])
@pytest.mark.parametrize("variant", [0, 1], ids=["static_shared", "dynamic_shared"])
def test_shared_memory_block_reduction(n, variant, schedule):
    x = _data(n)
    assert emu.selftest_block_sum(x, variant).item() == x.sum().item()


def test_missing_syncthreads_gives_wrong_answer():
    emu.set_schedule("forward")  # the default order
    x = torch.ones(256)
    assert emu.selftest_block_sum(x, 0).item() == 256.0
    # Thread 0 reduces before threads 1.. have written their shared slots, which the
    # emulator filled with NaN at the block's start.
    assert torch.isnan(emu.selftest_block_sum(x, 2)).item()


def test_reverse_schedule_is_a_different_interleaving():
    # Under the reverse order the writers of the upper slots run first and this particular
    # race goes unseen; that is why kernel tests run under both orders.
    emu.set_schedule("reverse")
    try:
        assert emu.selftest_block_sum(torch.ones(256), 2).item() == 256.0
    finally:
        emu.set_schedule("forward")


@pytest.mark.parametrize("threads", [32, 64, 96, 256])
@pytest.mark.parametrize("n", [32, 100, 1024])
def test_warp_shuffle_down_reduction(n, threads, schedule):
    x = _data(n, seed=n)
    sums = emu.selftest_warp_sum(x, False, threads)
    padded = torch.cat([x, torch.zeros((-n) % 32)])
    expect = padded.view(-1, 32).sum(1)
    # Warps that start past n never run (their block may not exist): compare those that do.
    assert torch.equal(sums[: expect.numel()], expect)


@pytest.mark.parametrize("n", [32, 64, 100])
def test_warp_shuffle_xor_butterfly(n, schedule):
    x = _data(n, seed=7)
    lanes = emu.selftest_warp_sum(x, True, 64)
    padded = torch.cat([x, torch.zeros((-n) % 32)])
    expect = padded.view(-1, 32).sum(1).repeat_interleave(32)[:n]
    assert torch.equal(lanes, expect)  # every lane holds its warp's total


@pytest.mark.parametrize("blocks,threads", [(1, 32), (2, 64), (3, 50), (16, 128)])
def test_grid_stride_loop_covers_everything(blocks, threads):
    n = 1000  # more than blocks * threads in every case: each thread loops several times
    x = torch.arange(n, dtype=torch.float32)
    y = torch.full((n,), 1.0)
    out = emu.selftest_grid_stride_axpy(x, 2.0, y, blocks, threads)
    assert torch.equal(out, 2.0 * x + 1.0)


def test_builtin_coordinates_3d():
    grid, block = (2, 3, 2), (4, 2, 3)
    out = emu.selftest_coordinates(list(grid), list(block))
    rows = []
    for bz in range(grid[2]):
        for by in range(grid[1]):
            for bx in range(grid[0]):
                for tz in range(block[2]):
                    for ty in range(block[1]):
                        for tx in range(block[0]):
                            rows.append([tx, ty, tz, bx, by, bz, *block, *grid])
    assert torch.equal(out, torch.tensor(rows, dtype=torch.int32))


def test_barrier_not_reached_by_all_threads_is_an_error():
    with pytest.raises(RuntimeError, match=r"__syncthreads\(\) reached by 27 of 32"):
        emu.selftest_divergent_barrier()


def test_bad_launch_configuration_is_an_error():
    with pytest.raises(RuntimeError, match="a block holds 1 to 1024"):
        emu.selftest_warp_sum(torch.ones(4), False, 2048)


def test_schedule_argument_checked():
    with pytest.raises(ValueError, match="order must be 'forward', 'reverse' or 'warp_ahead'"):
        emu.set_schedule("sideways")
