"""Every op on every backend through one harness (tests/cuda_harness.py): the CPU op, the CUDA
kernels under the emulator (both thread and block orders, looped grids capped at two blocks,
NaN-guarded buffers) and the real CUDA op where a GPU is visible, each against the CPU op;
opcheck on CUDA; the same bad-input errors on CUDA as on the CPU. `make test-gpu` runs the
CUDA cases alone."""
import pytest
import torch

from cuda_harness import BACKENDS, assert_same, cases, emulation, guarded, run, skip_without_cuda

CASES = cases()


# the cuda cases carry the marker at collection, so that `pytest -m cuda` (make test-gpu) selects them
OTHER_BACKENDS = [pytest.param(b, marks=pytest.mark.cuda) if b == "cuda" else b for b in BACKENDS if b != "cpu"]


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_op_matches_the_cpu_op(case, backend):
    want = run(case, "cpu")
    assert_same(run(case, backend), want, case, backend)


@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_opcheck_on_cuda(case):
    skip_without_cuda("cuda")
    args = [a.clone().cuda() if isinstance(a, torch.Tensor) else a for a in case.args]
    torch.library.opcheck(case.op, args)


@pytest.mark.cuda
def test_cuda_rejects_what_the_cpu_rejects():
    skip_without_cuda("cuda")
    bad = [lambda d: torch.ops.pyadv.ssim_forward(torch.full((1, 1, 12, 12), float("inf"), device=d),
                                                  torch.rand(1, 1, 12, 12, device=d), 11, 1.5, 0.01, 0.03, 1.0,
                                                  False, False),
           lambda d: torch.ops.pyadv.pixel_fi(torch.rand(2, 3, 4, device=d), torch.rand(2, 4, device=d),
                                              torch.zeros(2, dtype=torch.long, device=d))]
    from pyadv.ops import checked_inputs

    for call in bad:
        with pytest.raises(Exception) as cpu:
            call("cpu")
        with checked_inputs(), pytest.raises(type(cpu.value)) as gpu:
            call("cuda")
        assert str(gpu.value).splitlines()[0] == str(cpu.value).splitlines()[0]


def test_the_grid_cap_makes_loops_run_several_passes():
    """A grid-stride loop with a cap of one block still covers every element."""
    from pyadv import _C

    x, y = torch.rand(5000), torch.rand(5000)
    with emulation("emulated-forward", grid_cap=1):
        out = _C.emulated.selftest_grid_stride_axpy(x, 2.0, y, 64, 128)
    torch.testing.assert_close(out, 2.0 * x + y)
    with pytest.raises(ValueError, match="cap must be in"):
        _C.emulated.set_loop_grid_cap(-1)


def test_value_checks_switch():
    from pyadv import _C, ops

    assert _C.check_inputs() is False  # off by default: no host sync in an op on CUDA
    with ops.checked_inputs():
        assert _C.check_inputs() is True
    assert _C.check_inputs() is False
    # CPU tensors are checked whatever the switch says
    with pytest.raises(ValueError, match="target must hold class indices"):
        ops.pixel_fi(torch.rand(2, 3, 4), torch.full((2, 3), 1 / 3), torch.tensor([0, 7]))
    with pytest.raises(TypeError, match="enabled must be True or False"):
        ops.set_check_inputs(1)


def test_guards_catch_reads_and_writes_past_the_ends():
    g = guarded(torch.arange(6.0))
    assert g.intact() and torch.equal(g.view, torch.arange(6.0))
    g.buffer[g.buffer.numel() - 1] = 0.0  # a write one past the end, as a missing r < H guard would do
    assert not g.intact()
    assert torch.isnan(g.buffer[:64]).all()  # a read before the start gets NaN
