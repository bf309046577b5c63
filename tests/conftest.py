import os

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(params=None)
def isa(request):
    """Runs a test once per CPU kernel variant this machine supports, then restores the choice."""
    from pyadv import _C

    before = _C.cpu_isa()
    _C.set_cpu_isa(request.param)
    yield request.param
    _C.set_cpu_isa(before)


def pytest_generate_tests(metafunc):
    if "isa" in metafunc.fixturenames:
        from pyadv import _C

        metafunc.parametrize("isa", list(_C.cpu_isa_supported()), indirect=True)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """A private pretrained-model cache for the whole session (the user's is never touched)."""
    d = tmp_path_factory.mktemp("pyadv-cache")
    old = os.environ.get("PYADV_CACHE")
    os.environ["PYADV_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("PYADV_CACHE", None)
    else:
        os.environ["PYADV_CACHE"] = old


@pytest.fixture(scope="session")
def digits_cnn(cache_dir):
    from pyadv.models import pretrained

    return pretrained("digits-cnn", progress=False)


@pytest.fixture(scope="session")
def digits8_cnn(cache_dir):
    from pyadv.models import pretrained

    return pretrained("digits8-cnn", progress=False)
