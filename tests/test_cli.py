import json
import subprocess
import sys

import pytest

from pyadv.cli import main


def run(*args, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "pyadv", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0 and "demo" in r.stdout and "info" in r.stdout
    assert run("--version").stdout.strip() == "pyadv 0.1.0"
    assert "--seed" in run("demo", "--help").stdout


@pytest.mark.parametrize("args,match", [(["demo", "--images", "0"], "expected a positive integer"),
                                        (["demo", "--device", "cuda:7"], "device 'cuda:7'"),
                                        (["demo", "--convention", "svd"], "invalid choice"),
                                        (["frobnicate"], "invalid choice"),
                                        ([], "required")])
def test_bad_usage_exits_2(args, match):
    r = run(*args)
    assert r.returncode == 2
    assert match in r.stderr


@pytest.mark.slow
def test_demo_writes_report_and_figures(tmp_path, digits_cnn, cache_dir):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--images", "2", "--no-progress"]) == 0
    report = (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["images"]) == 2 and summary["test_accuracy"] >= 0.97
    for row in summary["images"]:
        png = out / row["figure"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert row["figure"] in report
        assert row["label"] == row["pred"]  # "vulnerable" picks correctly classified images
    assert (out / "manhattan.png").read_bytes()[:4] == b"\x89PNG"
    assert "manhattan.png" in report and summary["test_images"] == 355
    # The lowest-confidence correct images come first.
    assert summary["images"][0]["p_label"] <= summary["images"][1]["p_label"]
    # FIPSO on the same images: figure, saved result, summary in the report.
    from pyadv.attacks import AttackResult

    assert (out / "fipso.png").read_bytes()[:4] == b"\x89PNG" and "fipso.png" in report
    r = AttackResult.load(out / "fipso.safetensors")
    assert len(r) == 2 and r.attack == "fipso" and r.options["quantize"] is True
    assert summary["fipso"]["successes"] == int(r.success.sum())
    assert [e["test_index"] for e in summary["fipso"]["per_image"]] == [e["test_index"] for e in summary["images"]]
    # the adversarial dataset: three parts, its card, and the numbers the report quotes
    from pyadv.data import AdversarialDataset

    ds = AdversarialDataset(out / "dataset")
    assert {r["part"] for r in ds.records} == {"fipso", "hotcold", "pgd"} == set(summary["dataset"])
    assert summary["dataset"]["pgd"]["successes"] == len(ds.where(part="pgd", success=True))
    assert (out / "dataset" / "README.md").exists() and "An adversarial dataset" in report


def test_demo_bad_images_count_fails_with_exit_1(tmp_path, cache_dir, digits_cnn):
    assert main(["demo", "--out", str(tmp_path), "--images", "100000", "--no-progress"]) == 1


def test_ctrl_c_is_a_line_and_exit_130(monkeypatch, capsys, tmp_path):
    import pyadv.generate_cli

    def interrupted(args, argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(pyadv.generate_cli, "run_generate", interrupted)
    assert main(["generate", "--attack", "fgs", "--out", str(tmp_path / "d")]) == 130
    err = capsys.readouterr().err
    assert err == "pyadv generate: interrupted; rerun the same command to resume (finished shards are kept)\n"
