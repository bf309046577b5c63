"""`pyadv bench` and the benchmark scripts: one implementation (pyadv.bench), a table of
pyadv's throughput and its ratio to each peer, skipped peers listed with their pip command.
Nothing here judges a speed: only that the figures are measured, finite and where they belong."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import types
from pathlib import Path

import pytest

from pyadv import bench
from pyadv.bench import harness, peers
from pyadv.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", bench.SUITES["all"])
def test_every_family_has_the_shared_interface_and_a_script(name):
    mod = bench.family(name)
    assert mod.FAMILY == name and mod.SUITE in ("kernels", "attacks")
    assert name in bench.SUITES[mod.SUITE]
    assert all(p in peers.PEERS for p in mod.PEERS)
    assert callable(mod.run) and callable(mod.summary)
    args = mod.build_parser().parse_args(["--quick", "--device", "cpu"])
    assert args.quick and args.device == "cpu"
    # the script under benchmarks/ runs this very module: no second implementation
    shim = (ROOT / "benchmarks" / f"{name}.py").read_text()
    assert f"from pyadv.bench import {name}" in shim and f"script({name})" in shim


def test_unknown_family_and_suite_are_refused():
    with pytest.raises(ValueError, match="unknown benchmark family 'nope'"):
        bench.family("nope")
    with pytest.raises(ValueError, match="suite must be one of"):
        bench.run("fast")


def test_alternating_reverses_the_order_and_ratios_are_per_round_medians():
    seen = []
    times = harness.alternating(["a", "b"], 3, lambda n, r: seen.append((n, r)))
    assert seen == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]
    assert all(len(v) == 3 and all(t >= 0 for t in v) for v in times.values())
    assert harness.median_ratio({"pyadv": [1.0, 2.0, 4.0], "x": [3.0, 2.0, 4.0]}, "x") == 1.0


def test_peer_registry_knows_how_to_install_each_peer():
    for name, (module, cmd) in peers.PEERS.items():
        assert cmd.startswith("pip install") and module
    assert peers.installed("scipy")  # a test dependency
    assert peers.pip_command("art").endswith("adversarial-robustness-toolbox==1.20.1 six")


def test_kernel_family_through_the_cli_writes_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--only", "fi", "--quick", "--json", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "pixel_fi B=256 K=10 P=784" in stdout and "composed" in stdout
    report = json.loads(out.read_text())
    assert report["suite"] == "all" and report["device"] == "cpu" and report["quick"]
    rows = report["families"]["fi"]["rows"]
    assert len(rows) == 2
    for r in rows:
        assert r["rate"] > 0 and math.isfinite(r["rate"]) and r["unit"] == "GB/s of J"
        assert r["vs"]["composed"] > 0
    # the table rows summarise the family's own results, measured once
    payload = report["families"]["fi"]["payload"]
    assert [r["vs"]["composed"] for r in rows] == [p["speedup_vs_composed"] for p in payload["results"]]


def test_missing_peers_are_listed_with_their_pip_command(monkeypatch, capsys):
    fake = types.ModuleType("pyadv.bench.fake")
    fake.FAMILY, fake.SUITE, fake.PEERS = "fake", "attacks", ("torchattacks", "art")
    fake.build_parser = lambda: harness.parser("fake")
    fake.run = lambda args: {"rate": 10.0, "device": args.device}
    fake.summary = lambda payload: [{"case": "fake case", "rate": payload["rate"], "unit": "images/s",
                                     "vs": {"torchattacks": 2.5}, "success": 0.75, "outside_model": 0.05}]
    monkeypatch.setitem(sys.modules, "pyadv.bench.fake", fake)
    monkeypatch.setitem(bench.SUITES, "all", bench.SUITES["all"] + ("fake",))
    monkeypatch.setattr(peers, "installed", lambda name: name != "art")
    report = bench.run("all", families=["fake"], log=lambda m: None)
    assert report["skipped_peers"] == {"art": peers.pip_command("art")}
    text = bench.table(report)
    assert "fake case" in text and "torchattacks 2.50x" in text and "success 75%" in text
    assert "outside model 5%" in text
    assert "peers not installed (skipped):" in text and "adversarial-robustness-toolbox==1.20.1" in text


def test_bad_usage_exits_2(tmp_path, capsys):
    assert main(["bench", "--suite", "kernels", "--only", "generate"]) == 2
    assert "--only generate: not in --suite kernels" in capsys.readouterr().err
    assert main(["bench", "--only", "fi", "--json", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["bench", "--only", "nope"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["bench", "--device", "tpu"])
    assert e.value.code == 2


def test_the_script_writes_its_json(tmp_path):
    out = tmp_path / "fi.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fi.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(out.read_text())
    assert payload["family"] == "fi" and payload["machine"]["device"] == "cpu"
    assert all(r["speedup_vs_composed"] > 0 for r in payload["results"])


def test_a_partial_generate_rerun_keeps_the_other_attacks_entries(tmp_path):
    from pyadv.bench import generate as gen

    out = tmp_path / "generate.json"
    old = {"batch_size": 256, "attacks": {"pgd": {"images": 256, "seconds": 1.0}, "fgs": {"images": 256, "seconds": 9.0},
                                          "bim": {"images": 32, "seconds": 2.0}}}
    out.write_text(json.dumps(old))
    args = gen.build_parser().parse_args(["--only", "fgs", "--out", str(out)])
    kept = gen._kept(args)
    # the rerun attack is replaced, an entry of another image count is not kept as comparable
    assert kept == {"pgd": old["attacks"]["pgd"]}
    assert list(gen._in_registry_order({"pgd": 1, "fgs": 2})) == ["fgs", "pgd"]
    assert gen._kept(gen.build_parser().parse_args(["--out", str(out)])) == {}  # a full run replaces the file
    out.write_text("{not json")
    assert gen._kept(args) == {}


def test_onepixel_summary_compares_peers_with_float32_pyadv_only():
    from pyadv.bench import attacks_onepixel

    entry = {"images": 4, "pyadv": {"images_per_s": 2.0, "success": 0.5, "outside_forward_share": 0.1},
             "pyadv_bf16": {"images_per_s": 2.2, "time_ratio_to_pyadv": 0.9},
             "torchattacks": {"time_ratio_to_pyadv": 9.0, "time_ratio_to_pyadv_bf16": 10.0}}
    (row,) = attacks_onepixel.summary({"results": {"digits8-cnn": entry}})
    assert row["vs"] == {"torchattacks": 9.0} and row["rate"] == 2.0
