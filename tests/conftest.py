import os

import pytest
import torch

torch.set_num_threads(2)


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
