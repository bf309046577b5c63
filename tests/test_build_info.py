import json
import subprocess
import sys

import torch

import pyadv
from pyadv import _C


def test_info_reports_ops_isa_and_cuda():
    d = pyadv.info()
    assert d["version"] == pyadv.__version__ == "0.1.0"
    backends = ["CPU"] + (["CUDA"] if d["cuda_compiled"] else [])
    # Every op the extension registers is reported.
    registered = {n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("pyadv::")}
    assert set(d["ops"]) == registered
    names = ("pixel_fi", "fi_accumulate", "fi_finish", "fi_group_accumulate", "fi_group_finish", "pso_step",
             "swarm_best", "de_trial", "de_select", "sparse_perturb", "pixel_replace", "ssim_forward",
             "ssim_backward", "warp_perspective", "ecc_moments", "ecc_solve", "sparse_conv_stage")
    assert {name: d["ops"][name] for name in names} == {name: backends for name in names}
    # CPU only: the in-place renderers, and ECC's pre-filter (torch ops do that step on CUDA).
    assert d["ops"]["sparse_perturb_out"] == ["CPU"] and d["ops"]["pixel_replace_out"] == ["CPU"]
    assert d["ops"]["ecc_prefilter"] == ["CPU"]
    assert d["cpu_isa"] in d["cpu_isa_supported"]
    assert set(d["cpu_isa_supported"]) <= set(d["cpu_isa_compiled"])
    assert d["cpu_isa_compiled"][0] == "baseline"
    assert d["cuda_usable"] == (d["cuda_compiled"] and torch.cuda.is_available())
    assert d["torch"] == torch.__version__


def test_built_against_this_torch_abi():
    b = _C.build_info()
    assert b["torch_version"] == torch.__version__
    assert b["cxx11_abi"] == torch._C._GLIBCXX_USE_CXX11_ABI


def test_cpu_isa_env_cap_is_honoured():
    code = "import pyadv; print(pyadv._C.cpu_isa())"
    out = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, "PYADV_CPU_ISA": "baseline"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "baseline"


def test_cli_info_json():
    out = subprocess.run([sys.executable, "-m", "pyadv", "info", "--json"], capture_output=True, text=True, check=True)
    d = json.loads(out.stdout)
    assert d["ops"]["pixel_fi"][0] == "CPU"
    assert d["cpu_isa"] in d["cpu_isa_compiled"]


def test_no_march_native_in_build_files():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for f in [root / "CMakeLists.txt", root / "setup.py", *root.joinpath("csrc").rglob("*")]:
        if f.is_file():
            assert "-march=native" not in f.read_text(errors="ignore"), f


def test_forcing_cuda_without_cuda_torch_fails_at_configure(tmp_path):
    import shutil
    from pathlib import Path

    if torch.version.cuda is not None:
        import pytest

        pytest.skip("this torch has CUDA: forcing it on is not an error here")
    root = Path(__file__).resolve().parents[1]
    cmake = shutil.which("cmake")
    r = subprocess.run([cmake, "-S", str(root), "-B", str(tmp_path), "-G", "Ninja", "-DPYADV_CUDA=ON",
                        f"-DPython_EXECUTABLE={sys.executable}"], capture_output=True, text=True)
    assert r.returncode != 0
    assert "PYADV_CUDA=ON but this torch" in r.stdout + r.stderr
