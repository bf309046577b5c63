"""The compiled batched L-BFGS-B (pyadv.optim.LBFGSB) against scipy's L-BFGS-B, the trusted peer:
the same iterates (to rounding), iteration and evaluation counts and stopping reason on convex and
non-convex bounded problems; the edge cases of the algorithm (a start outside the box, fixed
variables, a start at the minimum, the memory wrapping, a failed line search); threads; bad input;
and the L-BFGS attack on the compiled solver against the same attack on scipy's."""
import numpy as np
import pytest
import torch
from scipy.optimize import minimize as scipy_minimize

from pyadv.optim.lbfgsb import (ABNORMAL, CONVERGED_FTOL, CONVERGED_PGTOL, EVALUATE, IDLE, LBFGSB, MAX_EVAL,
                                MAX_ITER, minimize)

SCIPY_STATUS = {"CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL": CONVERGED_PGTOL,
                "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH": CONVERGED_FTOL,
                "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT": MAX_ITER,
                "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT": MAX_EVAL}


def quadratics(B, n, seed):
    """f_b(x) = x'A_b x / 2 - c_b'x, A_b positive definite, minimisers partly outside [0, 1]."""
    rng = np.random.default_rng(seed)
    Q = rng.standard_normal((B, n, n))
    A = Q @ Q.transpose(0, 2, 1) / n + np.stack([np.diag(rng.uniform(0.01, 2, n)) for _ in range(B)])
    c = 2 * rng.standard_normal((B, n))
    return lambda b, x: (0.5 * x @ A[b] @ x - c[b] @ x, A[b] @ x - c[b])


def robust_regressions(B, n, seed):
    """f_b(x) = sum log(1 + (M_b x - y_b)^2): non-convex."""
    rng = np.random.default_rng(seed)
    M, y = rng.standard_normal((B, 60, n)), rng.standard_normal((B, 60))

    def f(b, x):
        r = M[b] @ x - y[b]
        return np.log1p(r ** 2).sum(), M[b].T @ (2 * r / (1 + r ** 2))
    return f


def rosenbrock(b, x):
    f = np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    g = np.zeros_like(x)
    g[:-1] += -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    g[1:] += 200 * (x[1:] - x[:-1] ** 2)
    return f, g


def run_compiled(fn, x0, lower, upper, **options):
    """Every problem b of fn(b, x) from x0[b], one step call per round for all waiting rows."""
    B, n = x0.shape
    opt = LBFGSB(B, n, lower, upper, **options)
    opt.start(torch.arange(B), torch.from_numpy(x0))
    rounds = 0
    while len(rows := opt.waiting()):
        fs, gs = zip(*(fn(int(r), opt.x[r].numpy().copy()) for r in rows))
        opt.step(rows, torch.tensor(fs, dtype=torch.float64), torch.from_numpy(np.stack(gs)))
        rounds += 1
    return opt, rounds


def run_scipy(fn, b, x0, lower, upper, m=10, max_iter=15000, max_eval=15000):
    n = len(x0)
    lo, hi = np.broadcast_to(lower, n), np.broadcast_to(upper, n)
    return scipy_minimize(lambda v: fn(b, v), x0, jac=True, method="L-BFGS-B", bounds=list(zip(lo, hi)),
                          options={"maxcor": m, "maxiter": max_iter, "maxfun": max_eval})


@pytest.mark.parametrize("problem, m", [("quadratic", 1), ("quadratic", 3), ("quadratic", 10), ("robust", 3),
                                        ("robust", 10)])
def test_matches_scipy_iterate_for_iterate(problem, m):
    """To convergence: the same iterations, evaluations, stopping reason and minimiser (3 and 1
    corrections make the memory wrap around many times)."""
    B, n = 5, 40
    fn = quadratics(B, n, 1) if problem == "quadratic" else robust_regressions(B, n, 2)
    lower, upper = (0.0, 1.0) if problem == "quadratic" else (-0.3, 0.5)
    x0 = np.random.default_rng(3).uniform(lower, upper, (B, n))
    opt, _ = run_compiled(fn, x0, lower, upper, m=m)
    for b in range(B):
        ref = run_scipy(fn, b, x0[b], lower, upper, m=m)
        assert int(opt.iterations[b]) == ref.nit and int(opt.evaluations[b]) == ref.nfev, b
        assert int(opt.status[b]) == SCIPY_STATUS[ref.message], (b, ref.message)
        # rounding differences grow over tens of iterations; the stopping rule's own tolerance is larger
        np.testing.assert_allclose(opt.x[b].numpy(), ref.x, rtol=0, atol=1e-7)
        assert opt.at_evaluated[b]


@pytest.mark.parametrize("k", [1, 2, 15, 30])
def test_first_iterations_of_rosenbrock_equal_scipy(k):
    """A hard non-convex problem with active bounds, stopped after k iterations: the iterate k of
    both (rounding apart: the two sum their dot products in different orders)."""
    n = 60
    x0 = np.random.default_rng(4).uniform(-2.0, 0.8, (2, n))
    opt, _ = run_compiled(rosenbrock, x0, -2.0, 0.8, max_iter=k)
    for b in range(2):
        ref = run_scipy(rosenbrock, b, x0[b], -2.0, 0.8, max_iter=k)
        assert int(opt.status[b]) == MAX_ITER and int(opt.iterations[b]) == ref.nit == k
        assert int(opt.evaluations[b]) == ref.nfev
        np.testing.assert_allclose(opt.x[b].numpy(), ref.x, rtol=0, atol=1e-11)


def test_evaluation_limit_and_per_variable_bounds():
    B, n = 3, 20
    fn = robust_regressions(B, n, 5)
    rng = np.random.default_rng(6)
    lower = -rng.uniform(0.1, 0.5, (B, n))
    upper = rng.uniform(0.1, 0.5, (B, n))
    x0 = np.zeros((B, n))
    opt, _ = run_compiled(fn, x0, torch.from_numpy(lower), torch.from_numpy(upper), max_eval=7)
    for b in range(B):
        ref = run_scipy(fn, b, x0[b], lower[b], upper[b], max_eval=7)
        assert int(opt.status[b]) == SCIPY_STATUS[ref.message] == MAX_EVAL
        assert int(opt.evaluations[b]) == ref.nfev and int(opt.iterations[b]) == ref.nit
        np.testing.assert_allclose(opt.x[b].numpy(), ref.x, atol=1e-10)
        assert (opt.x[b].numpy() >= lower[b]).all() and (opt.x[b].numpy() <= upper[b]).all()


def test_start_outside_the_box_fixed_variables_and_a_start_at_the_minimum():
    centre = np.array([0.3, 1.4, -0.2, 0.7, 0.5, 0.9])
    fn = lambda b, x: (float(((x - centre) ** 2).sum()), 2 * (x - centre))
    lower = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.4, 0.0], dtype=torch.float64)
    upper = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.4, 1.0], dtype=torch.float64)  # variable 4 fixed at 0.4
    x0 = np.array([[5.0, -3.0, 0.5, 0.5, 0.0, 0.9],               # outside: projected first
                   [0.3, 1.0, 0.0, 0.7, 0.4, 0.9]])                # the constrained minimum itself
    opt, _ = run_compiled(fn, x0, lower, upper)
    expect = np.clip(centre, lower.numpy(), upper.numpy())
    np.testing.assert_allclose(opt.x[0].numpy(), expect, atol=1e-8)
    assert float(opt.x[0, 4]) == 0.4
    assert int(opt.status[1]) == CONVERGED_PGTOL and int(opt.evaluations[1]) == 1 and int(opt.iterations[1]) == 0
    assert torch.equal(opt.x[1], torch.from_numpy(x0[1]))
    for b in range(2):
        ref = run_scipy(fn, b, x0[b], lower.numpy(), upper.numpy())
        assert int(opt.evaluations[b]) == ref.nfev and int(opt.iterations[b]) == ref.nit


def test_a_wrong_gradient_ends_in_a_failed_line_search_at_the_start():
    """g pointing uphill: no step decreases f along -g; steepest descent is tried, then the solve
    ends abnormally at the last iterate (here the start), as scipy's does."""
    fn = lambda b, x: (float((x ** 2).sum()), -2 * x)
    x0 = np.full((1, 4), 0.5)
    opt, _ = run_compiled(fn, x0, -1.0, 1.0)
    ref = run_scipy(fn, 0, x0[0], -1.0, 1.0)
    assert int(opt.status[0]) == ABNORMAL and "ABNORMAL" in ref.message
    assert not opt.at_evaluated[0]
    np.testing.assert_array_equal(opt.x[0].numpy(), ref.x)
    # the same trials; scipy's driver does not call f again at a point equal to the last one
    # (the search's last trials repeat x0 to the last bit), which its nfev leaves out
    assert int(opt.evaluations[0]) >= ref.nfev


def test_restart_rows_independently_and_threads_do_not_change_results():
    B, n = 12, 30
    fn = robust_regressions(B, n, 7)
    x0 = np.random.default_rng(8).uniform(-0.3, 0.5, (B, n))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, _ = run_compiled(fn, x0, -0.3, 0.5)
        torch.set_num_threads(2)
        two, _ = run_compiled(fn, x0, -0.3, 0.5)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one.x, two.x) and torch.equal(one.iterations, two.iterations)
    # restart half the rows from other points: the other half's state is untouched
    before = one.x.clone()
    one.start(torch.arange(0, B, 2), torch.zeros(B // 2, n))
    assert (one.status[::2] == EVALUATE).all() and (one.status[1::2] != EVALUATE).all()
    assert torch.equal(one.x[1::2], before[1::2]) and (one.x[::2] == 0).all()


def test_every_cpu_variant_computes_the_same_bits(isa):
    """The kernel is compiled per instruction set without FMA contraction: the same iterates."""
    from pyadv import _C

    fn = robust_regressions(6, 45, 11)
    x0 = np.random.default_rng(12).uniform(0.0, 1.0, (6, 45))
    mine, _ = run_compiled(fn, x0, 0.0, 1.0, m=5)
    _C.set_cpu_isa("baseline")
    try:
        ref, _ = run_compiled(fn, x0, 0.0, 1.0, m=5)
    finally:
        _C.set_cpu_isa(isa)
    assert torch.equal(mine.x, ref.x) and torch.equal(mine.iterations, ref.iterations)
    assert torch.equal(mine.evaluations, ref.evaluations)


def test_a_cauchy_search_past_many_tied_breakpoints_equals_scipy():
    """Steep objectives from the centre of the box: the first Cauchy search passes every
    breakpoint, more than the few its scan keeps in order (the heap takes over), most of them
    tied (four gradient sizes from the same start)."""
    B, n = 4, 60
    rng = np.random.default_rng(3)
    c = rng.choice([-200.0, -50.0, 50.0, 200.0], size=(B, n))
    a = rng.uniform(0.1, 1.0, (B, n))
    fn = lambda b, x: (0.5 * a[b] @ x ** 2 + c[b] @ x + np.log1p(x @ x), a[b] * x + c[b] + 2 * x / (1 + x @ x))
    x0 = np.full((B, n), 0.5)
    opt, _ = run_compiled(fn, x0, 0.0, 1.0)
    for b in range(B):
        ref = run_scipy(fn, b, x0[b], 0.0, 1.0)
        assert int(opt.iterations[b]) == ref.nit and int(opt.evaluations[b]) == ref.nfev
        np.testing.assert_allclose(opt.x[b].numpy(), ref.x, rtol=0, atol=1e-10)


def test_minimize_function_and_an_empty_batch():
    """minimize() on one objective of whole batches (the same quadratic, four starts)."""
    fn = quadratics(1, 25, 9)
    x0 = torch.from_numpy(np.random.default_rng(10).uniform(0, 1, (4, 25)))

    def batched(x):
        out = [fn(0, v.numpy()) for v in x]
        return torch.tensor([o[0] for o in out], dtype=torch.float64), torch.from_numpy(np.stack([o[1] for o in out]))

    res = minimize(batched, x0, 0.0, 1.0)
    for b in range(4):
        ref = run_scipy(fn, 0, x0[b].numpy(), 0.0, 1.0)
        np.testing.assert_allclose(res.x[b].numpy(), ref.x, atol=1e-9)
        assert res.fun[b].item() == pytest.approx(ref.fun, abs=1e-12)
        assert int(res.iterations[b]) == ref.nit and int(res.status[b]) == SCIPY_STATUS[ref.message]
    empty = minimize(lambda x: (x.sum(1), torch.ones_like(x)), torch.zeros(0, 3))
    assert empty.x.shape == (0, 3)
    idle = LBFGSB(2, 3)
    assert (idle.status == IDLE).all() and len(idle.waiting()) == 0


def test_bad_input_is_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="m must be an integer >= 1"):
        LBFGSB(2, 3, m=0)
    with pytest.raises(ValueError, match=r"m \(corrections kept\) must be in \[1, 64\]"):
        LBFGSB(2, 3, m=65)
    with pytest.raises(ValueError, match="lower must be <= upper"):
        LBFGSB(2, 3, lower=1.0, upper=0.0)
    with pytest.raises(ValueError, match="upper must be finite"):
        LBFGSB(2, 3, upper=float("inf"))
    with pytest.raises(ValueError, match=r"lower must be a number or broadcast to \[batch, n\]"):
        LBFGSB(2, 3, lower=torch.zeros(4))
    with pytest.raises(ValueError, match="factr must be a number >= 0"):
        LBFGSB(2, 3, factr=-1.0)
    opt = LBFGSB(2, 3)
    with pytest.raises(ValueError, match="row 1 is not waiting for an evaluation"):
        opt.step([1], torch.zeros(1), torch.zeros(1, 3))
    with pytest.raises(IndexError, match=r"rows\[1\] = 2 is outside \[0, 2\)"):
        opt.start([0, 2], torch.zeros(2, 3))
    with pytest.raises(ValueError, match="row 0 appears twice"):
        opt.start([0, 0], torch.zeros(2, 3))
    with pytest.raises(ValueError, match="x0.* is not finite"):
        opt.start([0], torch.full((1, 3), float("nan")))
    opt.start([0, 1], torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"f\[0\] \(row 0\) is not finite"):
        opt.step([0], torch.tensor([float("nan")]), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="g has entries that are not finite"):
        opt.step([0], torch.zeros(1), torch.full((1, 3), float("inf")))
    big = LBFGSB(64, 784)  # g over several of the check's parallel chunks: one bad value anywhere
    big.start(torch.arange(64), torch.zeros(64, 784))
    for where, bad in (((63, 783), float("nan")), ((40, 5), -float("inf")), ((0, 0), float("inf"))):
        g = torch.zeros(64, 784, dtype=torch.float64)
        g[where] = bad
        with pytest.raises(ValueError, match="g has entries that are not finite"):
            big.step(torch.arange(64), torch.zeros(64), g)
    assert (big.status == EVALUATE).all() and (big.iterations == 0).all()  # refused before any step
    with pytest.raises(ValueError, match=r"g must be \[len\(rows\), n\]"):
        torch.ops.pyadv.lbfgsb_step(opt.x, opt._ws, opt._iws, opt.lower, opt.upper, torch.tensor([0]),
                                    torch.zeros(1, dtype=torch.float64), torch.zeros(1, 4, dtype=torch.float64),
                                    10, 100, 100, 20, 1e7, 1e-5)
    with pytest.raises(TypeError, match="x must be float64"):
        torch.ops.pyadv.lbfgsb_start(opt.x.float(), opt._ws, opt._iws, opt.lower, opt.upper, torch.tensor([0]),
                                     torch.zeros(1, 3), 10)
    with pytest.raises(ValueError, match=r"ws must be \[2, "):
        torch.ops.pyadv.lbfgsb_start(opt.x, opt._ws[:, 1:].contiguous(), opt._iws, opt.lower, opt.upper,
                                     torch.tensor([0]), torch.zeros(1, 3), 10)


def test_opcheck():
    opt = LBFGSB(3, 5)
    x0 = torch.rand(3, 5, dtype=torch.float64)
    rows = torch.arange(3)
    torch.library.opcheck(torch.ops.pyadv.lbfgsb_start.default,
                          (opt.x, opt._ws, opt._iws, opt.lower, opt.upper, rows, x0, 10))
    opt.start(rows, x0)
    # step advances state: opcheck runs the op several times, so give each run a fresh copy
    args = (opt.x.clone(), opt._ws.clone(), opt._iws.clone(), opt.lower, opt.upper, rows,
            (x0 ** 2).sum(1), 2 * x0, 10, 100, 100, 20, 1e7, 1e-5)
    torch.library.opcheck(torch.ops.pyadv.lbfgsb_step.default, args,
                          test_utils=("test_schema", "test_faketensor"))


def test_lbfgs_attack_on_the_compiled_solver_matches_the_scipy_solver(digits_cnn, monkeypatch):
    """The attack's searches through the compiled solver and through scipy's, on 3 digits: the
    same iterations and minimisers (to float32 rounding of the model's answers), and one
    evaluation fewer per later solve (the answer at the clean image is kept)."""
    from pyadv.attacks import LBFGS
    from pyadv.data import digits

    x, y = digits("test", 28)
    x, y = x[:3], y[:3]
    compiled = LBFGS(digits_cnn, search_steps=2, max_iter=10)(x, y)
    monkeypatch.setattr(LBFGS, "_solver", "scipy")
    reference = LBFGS(digits_cnn, search_steps=2, max_iter=10)(x, y)
    assert torch.equal(compiled.success, reference.success)
    assert torch.equal(compiled.iterations, reference.iterations)
    assert (compiled.adv - reference.adv).abs().max() < 1e-4
    assert torch.allclose(compiled.extras["last_l2"], reference.extras["last_l2"], atol=1e-4)
    assert torch.equal(compiled.extras["const"].isnan(), reference.extras["const"].isnan())
    assert (compiled.queries == reference.queries - 1).all()


def test_the_benchmark_problems_at_n_784_equal_scipy_for_ten_iterations():
    """The benchmark's problems (pyadv/bench/lbfgsb.py: n = 784 on [0, 1], minimisers partly
    outside, many variables entering and leaving the free set): ten iterates as scipy's."""
    from pyadv.bench.lbfgsb import objective_numpy, problems

    d, c, e, U, x0 = problems(3, 784, seed=5)
    fn = lambda b, x: objective_numpy(d[b], c[b], e[b], U[b], x)
    opt, _ = run_compiled(fn, x0, 0.0, 1.0, max_iter=10)
    for b in range(3):
        ref = run_scipy(fn, b, x0[b], 0.0, 1.0, max_iter=10)
        assert int(opt.iterations[b]) == ref.nit and int(opt.evaluations[b]) == ref.nfev
        np.testing.assert_allclose(opt.x[b].numpy(), ref.x, rtol=0, atol=1e-10)
        at_bound = ((ref.x == 0) | (ref.x == 1)).mean()
        assert 0.01 < at_bound < 0.99  # the bounds matter


def test_lbfgs_attack_in_groups_when_the_state_exceeds_the_memory_budget(digits_cnn, monkeypatch):
    """A memory budget that holds two images' L-BFGS-B state: the images go through two at a
    time, with the same results as all at once (to the model's float32 rounding across batch
    sizes)."""
    from pyadv.attacks import LBFGS
    from pyadv.data import digits

    x, y = digits("test", 28)
    x, y = x[:5], y[:5]
    seen = []
    real = LBFGSB.__init__

    def spy(self, batch, n, *a, **k):
        seen.append(batch)
        real(self, batch, n, *a, **k)

    monkeypatch.setattr(LBFGSB, "__init__", spy)
    whole = LBFGS(digits_cnn, search_steps=2, max_iter=8)(x, y)
    assert seen == [5]
    budget = 2 * LBFGSB.state_bytes(28 * 28) + 100
    grouped = LBFGS(digits_cnn, search_steps=2, max_iter=8, memory_budget=budget)(x, y)
    assert seen == [5, 2, 2, 1]
    assert torch.equal(whole.success, grouped.success)
    assert (whole.adv - grouped.adv).abs().max() < 1e-3
    assert torch.allclose(whole.extras["last_l2"], grouped.extras["last_l2"], rtol=1e-3)
