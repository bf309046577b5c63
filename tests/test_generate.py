"""Dataset generation: input formats from tiny files, resume after SIGKILL byte for byte, 1 vs 2
ranks, damage detection, read-back and filters, every registered attack end to end, bad input."""
import gzip
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from attack_budgets import FAST
from pyadv.attacks import available
from pyadv.cli import main
from pyadv.data import AdversarialDataset, open_source
from pyadv.data.generate import FORMAT


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "pyadv", *args], capture_output=True, text=True, **kw)


# --- input formats ---------------------------------------------------------------------------

def test_image_folder(tmp_path, monkeypatch):
    from PIL import Image

    from pyadv.data.image_folder import ImageFolderSource

    rng = np.random.default_rng(0)
    want = {}
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(2):
            a = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
            Image.fromarray(a).save(tmp_path / c / f"{i}.png")
            want[(c, i)] = a
    grey = rng.integers(0, 256, (5, 6), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "dog" / "2.png")  # a grey image in a colour folder: RGB
    # opening reads headers only: nothing is decoded until a batch asks for it
    monkeypatch.setattr(ImageFolderSource, "_decode", lambda self, i: pytest.fail("decoded at open"))
    s = open_source(str(tmp_path))
    monkeypatch.undo()
    assert s.classes == ["cat", "dog"] and s.labels.tolist() == [0, 0, 1, 1, 1] and len(s) == 5
    assert s.is_8bit and s.channels == 3 and s.size == (5, 6)
    px = s.pixels_of(torch.tensor([2, 4, 0]))
    assert px.shape == (3, 3, 5, 6) and px.dtype == torch.uint8
    assert np.array_equal(px[0].permute(1, 2, 0).numpy(), want[("dog", 0)])
    assert np.array_equal(px[2].permute(1, 2, 0).numpy(), want[("cat", 0)])
    assert all(np.array_equal(px[1, ch].numpy(), grey) for ch in range(3))
    x = s.images(torch.arange(5))
    assert x.dtype == torch.float32 and torch.equal(x, s.pixels_of(torch.arange(5)).float() / 255)
    assert s.images(torch.arange(0)).shape == (0, 3, 5, 6)
    import pyadv.data.image_folder as image_folder

    monkeypatch.setattr(image_folder, "THREADED_PIXELS", 1)  # large images' path: decoded on threads
    assert torch.equal(s.pixels_of(torch.tensor([2, 4, 0])), px)
    monkeypatch.undo()

    # a grey folder stays one channel
    (tmp_path / "g" / "a").mkdir(parents=True)
    Image.fromarray(grey).save(tmp_path / "g" / "a" / "0.png")
    g = open_source(str(tmp_path / "g"))
    assert g.channels == 1 and torch.equal(g.pixels_of(torch.tensor([0]))[0, 0], torch.from_numpy(grey))
    Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)).save(tmp_path / "g" / "a" / "0.png")
    with pytest.raises(ValueError, match=r"0\.png: a colour image.*grey when it was opened"):
        g.images(torch.tensor([0]))

    # damage found after opening is named with its file
    data = (tmp_path / "cat" / "1.png").read_bytes()
    (tmp_path / "cat" / "1.png").write_bytes(data[:len(data) // 2])
    s = open_source(str(tmp_path))  # its header is intact
    with pytest.raises(ValueError, match=r"cat/1\.png: cannot decode"):
        s.images(torch.tensor([1]))
    (tmp_path / "cat" / "1.png").write_bytes(data)

    Image.fromarray(rng.integers(0, 256, (7, 6, 3), dtype=np.uint8)).save(tmp_path / "dog" / "odd.png")
    with pytest.raises(ValueError, match=r"odd\.png: image of 7x6 pixels.*same size"):
        open_source(str(tmp_path))
    (tmp_path / "dog" / "odd.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"odd\.png: not an image"):
        open_source(str(tmp_path))


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    imgs = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    labels = np.array([7, 0, 3], dtype=np.uint8)

    def write(name, magic, arr):
        data = struct.pack(">4B", 0, 0, 8, magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
        p = tmp_path / (name + (".gz" if gz else ""))
        p.write_bytes(gzip.compress(data) if gz else data)
        return p

    p = write("t10k-images-idx3-ubyte", 3, imgs)
    write("t10k-labels-idx1-ubyte", 1, labels)
    s = open_source(str(p))
    assert torch.equal(s.pixels[:, 0], torch.from_numpy(imgs)) and s.labels.tolist() == [7, 0, 3]
    raw = (gzip.decompress(p.read_bytes()) if gz else p.read_bytes())[:-3]  # truncated
    p.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(ValueError, match="truncated IDX"):
        open_source(str(p))


def test_cifar10_binary_and_pickles_refused(tmp_path):
    rng = np.random.default_rng(1)
    rec = rng.integers(0, 256, (4, 3073), dtype=np.uint8)
    rec[:, 0] = [3, 1, 4, 1]
    (tmp_path / "test_batch.bin").write_bytes(rec.tobytes())
    s = open_source(str(tmp_path))
    assert s.labels.tolist() == [3, 1, 4, 1] and s.pixels.shape == (4, 3, 32, 32)
    assert torch.equal(s.pixels[2].flatten(), torch.from_numpy(rec[2, 1:]))  # R, G, B planes in order
    assert s.classes[3] == "cat"
    # CIFAR-10's python version and any pickle are refused, never opened
    py = tmp_path / "py"
    py.mkdir()
    (py / "data_batch_1").write_bytes(pickle.dumps({"data": 1}))
    with pytest.raises(ValueError, match="pickled"):
        open_source(str(py))
    (tmp_path / "x.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="pickle"):
        open_source(str(tmp_path / "x.pkl"))
    from pyadv.models.loading import load_weights

    torch.save({"w": torch.zeros(1)}, tmp_path / "w.pt")
    with pytest.raises(ValueError, match="pickle"):
        load_weights(torch.nn.Linear(1, 1), tmp_path / "w.pt")


# --- generation ----------------------------------------------------------------------------

def gen(out, *extra):
    return ["generate", "--attack", "fgs", "-o", "eps=0.1", "-o", "quantize=true", "--limit", "24",
            "--batch-size", "8", "--quiet", "--out", str(out), *extra]


def payload(out: Path) -> dict:
    """Every file that must be byte-identical (the card names the output folder)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.suffix in (".safetensors", ".jsonl")} | {"job.json": (out / "job.json").read_bytes()}


def test_generate_reads_back_with_its_provenance(tmp_path, digits_cnn, cache_dir):
    out = tmp_path / "d"
    assert main(gen(out)) == 0
    ds = AdversarialDataset(out)
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(ds) == 24 == len(lines) and ds.records == lines
    assert [r["source_index"] for r in lines] == list(range(24))
    from pyadv.data import digits

    x, y = digits("test", 28)
    for i in (0, 13):
        img, label = ds[i]
        assert label == int(y[i]) and ds.image(i).dtype == torch.uint8  # quantized: stored as uint8
        with torch.no_grad():
            pred = digits_cnn(img[None]).argmax(1)
        assert int(pred) == lines[i]["pred"] and lines[i]["success"] == (int(pred) != label)
        clean = (x[i] * 255).round() / 255  # quantize=True: the clean image is rounded to 8 bits too
        assert abs((img - clean).abs().max().item() - lines[i]["linf"]) < 1e-6
    for r in lines:
        assert r["options"]["eps"] == 0.1 and r["attack"] == "fgs" and r["seed"] == 0 and "pyadv" in r["versions"]
        assert r["pass"] is not None and r["ssim"] is not None and r["queries"] >= 1
    ok = ds.where(success=True)
    assert len(ok) == sum(r["success"] for r in lines) and all(r["success"] for r in ok.records)
    hi = ds.where(pass_min=0.9, classes=[3, 5])
    assert all(r["pass"] >= 0.9 and r["label"] in (3, 5) for r in hi.records)
    mixed = torch.utils.data.ConcatDataset([ds, torch.utils.data.TensorDataset(x[:5], y[:5])])
    assert len(mixed) == 29
    # a DataLoader's workers started by spawn get the dataset pickled, shards already open in it
    import pickle

    assert torch.equal(pickle.loads(pickle.dumps(ds))[13][0], ds[13][0])
    loader = torch.utils.data.DataLoader(ok, batch_size=8, num_workers=1, multiprocessing_context="spawn")
    assert torch.equal(torch.cat([b[0] for b in loader]), torch.stack([ok[i][0] for i in range(len(ok))]))
    card = (out / "README.md").read_text()
    assert "pyadv generate" in card and (out / "l2.png").exists()
    job = json.loads((out / "job.json").read_text())
    assert ds.job == job and job["data_sha256"] == open_source("digits:test").digest()
    assert f"Model `digits-cnn` (sha256 `{job['model_sha256'][:16]}`), input `digits:test`" in card
    # export: uint8 shards exactly
    assert main(["export", str(out), "--png", str(tmp_path / "png"), "--quiet"]) == 0
    from PIL import Image

    pngs = sorted((tmp_path / "png").rglob("*.png"))
    assert len(pngs) == 24
    first = next(p for p in pngs if p.name.startswith("000000_"))
    assert torch.equal(torch.from_numpy(np.array(Image.open(first)))[None], ds.image(0))
    # rerun of the same command: nothing to do, same bytes
    before = payload(out)
    assert main(gen(out)) == 0 and payload(out) == before


def test_image_folder_job_matches_the_same_pixels_in_memory(tmp_path, digits_cnn, cache_dir):
    """A folder decoded shard by shard makes the same dataset as its pixels held in memory."""
    from PIL import Image

    from pyadv.data import Part, Source, generate

    digits_test = open_source("digits:test")
    x, y = (digits_test.images(torch.arange(10)) * 255).round().to(torch.uint8), digits_test.labels[:10]
    for i in range(10):
        (tmp_path / "f" / str(int(y[i]))).mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i, 0].numpy()).save(tmp_path / "f" / str(int(y[i])) / f"{i:02d}.png")
    folder = open_source(str(tmp_path / "f"))
    every = torch.arange(len(folder))
    held = Source("held", folder.pixels_of(every), folder.labels, folder.classes)
    parts = [Part("fgs", {"eps": 0.1, "quantize": True})]
    kw = dict(model_spec="digits-cnn", batch_size=3, limit=8, classes=[int(c) for c in folder.classes[1:]],
              progress=False)
    a = generate(tmp_path / "a", parts, digits_cnn, folder, **kw)
    b = generate(tmp_path / "b", parts, digits_cnn, held, **kw)
    assert a["shards"] == b["shards"] >= 2 and a["samples"] == b["samples"] > 0
    shards = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("shard-*"))
    assert shards and all((tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes() for p in shards)
    # the next shard's images are read while a shard runs: a damaged file is still the error of
    # the shard that holds it, raised when that shard starts, with the shards before it complete
    from pyadv.data.generate import select_images

    fifth = folder.files[int(select_images(folder, kw["classes"], kw["limit"])[4])]
    fifth.write_bytes(fifth.read_bytes()[:40])
    with pytest.raises(ValueError, match=rf"{fifth.name}: cannot decode"):
        generate(tmp_path / "c", parts, digits_cnn, folder, **kw)
    assert (tmp_path / "c" / "fgs" / "shard-00000.jsonl").exists()
    assert not list((tmp_path / "c" / "fgs").glob("shard-00001*"))


def test_changed_command_refused_and_damage_detected(tmp_path, digits_cnn, cache_dir):
    out = tmp_path / "d"
    assert main(gen(out)) == 0
    r = run(*gen(out, "--seed", "3"))
    assert r.returncode == 2 and "differs in: seed" in r.stderr
    first = sorted((out / "fgs").glob("*.jsonl"))[0]
    text = first.read_text().splitlines()
    first.write_text("\n".join(text[:2] + ["{not json"] + text[3:]) + "\n")
    from pyadv.data.generate import read_lines

    with pytest.raises(ValueError, match=r"shard-00000.jsonl line 3: not a manifest line"):
        read_lines(first)
    # JSON that is not one object per line: a number, two objects on one line, an empty line
    for bad, line in (("7", 2), (text[1] + ", " + text[2], 2), ("", 1)):
        first.write_text("\n".join(([] if line == 1 else text[:1]) + [bad] + text[line:]) + "\n")
        with pytest.raises(ValueError, match=rf"shard-00000.jsonl line {line}: not a manifest line"):
            read_lines(first)
    assert read_lines(first, "\n".join(text)) == [json.loads(t) for t in text]
    first.write_text("\n".join(text[:2] + ["{not json"] + text[3:]) + "\n")
    (out / "manifest.jsonl").unlink()
    r = run(*gen(out))  # the rerun that finishes the manifest reads every shard's lines
    assert r.returncode == 1 and "shard-00000.jsonl line 3: not a manifest line" in r.stderr
    first.write_text("\n".join(text) + "\n")
    shard = first.with_suffix(".safetensors")
    shard.write_bytes(shard.read_bytes()[:100])
    r = run(*gen(out))
    assert r.returncode == 1 and "shard-00000.safetensors: damaged shard" in r.stderr
    assert run(*gen(out, "--seed", "3", "--overwrite")).returncode == 0
    assert json.loads((out / "job.json").read_text())["seed"] == 3


def test_resume_refuses_an_input_that_changed(tmp_path, digits_cnn, cache_dir):
    """The same command on an output whose input or model changed since the job started (another
    image at the same path, a file added or touched in a folder, other pixels in memory, other
    weights under the model's name) is refused: resuming would make one dataset of two jobs."""
    from PIL import Image

    from pyadv.data import Part, Source, generate

    digits_test = open_source("digits:test")
    x, y = (digits_test.images(torch.arange(6)) * 255).round().to(torch.uint8), digits_test.labels[:6]
    root = tmp_path / "f"
    for i in range(6):
        (root / str(int(y[i]))).mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i, 0].numpy()).save(root / str(int(y[i])) / f"{i}.png")
    parts = [Part("fgs", {"eps": 0.1, "quantize": True})]
    kw = dict(model_spec="digits-cnn", batch_size=3, limit=6, progress=False)
    out = tmp_path / "out"
    first = generate(out, parts, digits_cnn, open_source(str(root)), **kw)
    assert first["shards"] == 2
    job = json.loads((out / "job.json").read_text())
    assert job["data_sha256"] == open_source(str(root)).digest()

    def interrupted_then_resumed(out, source, **more):
        (out / "fgs" / "shard-00001.jsonl").unlink(missing_ok=True)  # as if stopped before its last shard
        return generate(out, parts, digits_cnn, source, **kw, **more)

    # what a kill left half-written is removed when the job resumes; unchanged input: resumed
    stale = [out / "fgs" / ".shard-00001.safetensors.k1ll3d.tmp", out / ".manifest.jsonl.k1ll3d.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    assert interrupted_then_resumed(out, open_source(str(root)))["resumed_shards"] == 1
    assert not any(p.exists() for p in stale)
    image = sorted(root.rglob("*.png"))[0]
    changes = [
        lambda: Image.fromarray(255 - x[0, 0].numpy()).save(image),  # other pixels, same name
        lambda: os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9)),  # touched
        lambda: Image.fromarray(x[0, 0].numpy()).save(root / str(int(y[5])) / "9.png"),  # a file added
    ]
    for change in changes:
        change()
        before = (out / "job.json").read_bytes()
        with pytest.raises(ValueError, match=r"the input imagefolder:.* changed since that job started"):
            interrupted_then_resumed(out, open_source(str(root)))
        assert (out / "job.json").read_bytes() == before  # refused before anything was written
        assert interrupted_then_resumed(out, open_source(str(root)), overwrite=True)["resumed_shards"] == 0
    # in memory: one pixel, one label or a class name
    held = Source("held", x.clone(), y.clone(), [str(c) for c in range(10)])
    out = tmp_path / "held"
    generate(out, parts, digits_cnn, held, **kw)
    pixel, label = x.clone(), y.clone()
    pixel[3, 0, 10, 10] ^= 1
    label[2] = (label[2] + 1) % 10
    for other in (Source("held", pixel, y, held.classes), Source("held", x, label, held.classes),
                  Source("held", x, y, [*held.classes[:9], "nine"])):
        assert other.digest() != held.digest()
        with pytest.raises(ValueError, match="differs in: data_sha256"):
            interrupted_then_resumed(out, other)
    # the model under the same name with one weight changed (a zoo model trained again, say)
    import copy

    other = copy.deepcopy(digits_cnn)
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1e-3
    with pytest.raises(ValueError, match="the model digits-cnn's weights changed since that job started"):
        generate(out, parts, other, held, **kw)
    # a job started before the digests were recorded resumes, and records them from then on
    job = json.loads((out / "job.json").read_text())
    del job["data_sha256"], job["model_sha256"]
    (out / "job.json").write_text(json.dumps(job))
    assert interrupted_then_resumed(out, held)["resumed_shards"] == 1
    job = json.loads((out / "job.json").read_text())
    assert job["data_sha256"] == held.digest() and len(job["model_sha256"]) == 64


def test_a_running_job_locks_its_folder(tmp_path, digits_cnn, cache_dir, capsys):
    """A second job on a folder that a job is writing (the same command started again, say) is
    refused while the first holds the lock, and not after; the lock file is not content."""
    from pyadv.data import Part, generate
    from pyadv.data.generate import LOCK, JobRefused, _output_lock

    out = tmp_path / "d"
    kw = dict(model_spec="digits-cnn", batch_size=4, limit=4, progress=False)
    parts = [Part("fgs", {"eps": 0.1})]
    with _output_lock(out):  # as a job running in another process holds it
        with pytest.raises(JobRefused, match=rf"being written by another pyadv generate \(process {os.getpid()}\)"):
            generate(out, parts, digits_cnn, open_source("digits:test"), **kw)
        assert main(gen(out)) == 2 and "being written by another" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [LOCK]
    assert generate(out, parts, digits_cnn, open_source("digits:test"), **kw)["samples"] == 4
    assert (out / "job.json").exists() and (out / LOCK).exists()


def test_tensors_sha256_sees_values_names_dtypes_and_extra_state():
    from pyadv._digest import tensors_sha256

    a = torch.arange(6.0).view(2, 3)
    base = tensors_sha256([("w", a), ("extra", {"k": 1})])
    assert tensors_sha256([("w", a.t().contiguous().t())]) == tensors_sha256([("w", a)])  # layout is not content
    b = a.clone()
    b[1, 2] = torch.nextafter(b[1, 2], torch.tensor(10.0))  # one ulp
    for other in ([("w", b), ("extra", {"k": 1})], [("v", a), ("extra", {"k": 1})],
                  [("w", a.double()), ("extra", {"k": 1})], [("w", a.view(3, 2)), ("extra", {"k": 1})],
                  [("w", a), ("extra", {"k": 2})]):
        assert tensors_sha256(other) != base
    assert tensors_sha256([("s", torch.eye(3).to_sparse())]) == tensors_sha256([("s", torch.eye(3))])


@pytest.mark.slow
def test_resume_after_sigkill_is_byte_identical(tmp_path, digits_cnn, cache_dir):
    args = ["generate", "--attack", "pgd", "-o", "steps=30", "-o", "quantize=true", "--limit", "48",
            "--batch-size", "8", "--quiet"]
    whole = tmp_path / "whole"
    assert run(*args, "--out", str(whole)).returncode == 0
    cut = tmp_path / "cut"
    p = subprocess.Popen([sys.executable, "-m", "pyadv", *args, "--out", str(cut)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((cut / "pgd").glob("shard-*.jsonl")) if (cut / "pgd").exists() else True:
        assert time.time() < deadline and p.poll() is None, "the job ended before its first shard"
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    written = len(list((cut / "pgd").glob("shard-*.jsonl")))
    assert 1 <= written < 6 and not (cut / "manifest.jsonl").exists()
    assert run(*args, "--out", str(cut)).returncode == 0
    assert payload(cut) == payload(whole)


@pytest.mark.slow
def test_two_ranks_write_the_same_dataset(tmp_path, digits_cnn, cache_dir):
    args = ["generate", "--attack", "fgs", "-o", "quantize=true", "--limit", "40", "--batch-size", "8", "--quiet"]
    one = tmp_path / "one"
    assert run(*args, "--out", str(one)).returncode == 0
    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                        "29533", "-m", "pyadv", *args, "--out", str(two)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert payload(two) == payload(one)


@pytest.mark.parametrize("name", available())
def test_every_registered_attack_generates(name, tmp_path, digits_cnn, cache_dir):
    opts = [f"{k}={json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in FAST.get(name, {}).items()]
    out = tmp_path / name
    args = ["generate", "--attack", name, "--limit", "3", "--batch-size", "2", "--quiet", "--out", str(out)]
    for o in opts:
        args += ["-o", o]
    assert main(args) == 0
    ds = AdversarialDataset(out)
    assert len(ds) >= 1 and all(r["attack"] == name for r in ds.records)
    assert json.loads((out / "job.json").read_text())["format"] == FORMAT


def test_interrupted_write_leaves_no_partial_shard(tmp_path, digits_cnn, cache_dir, monkeypatch):
    import errno

    import pyadv._io as io

    real = io._fsync

    def full_disk(path, directory=False):  # the second shard's data does not fit: its flush fails
        if ".shard-00001.safetensors." in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, directory)

    monkeypatch.setattr(io, "_fsync", full_disk)
    out = tmp_path / "d"
    assert main(gen(out)) == 1
    files = sorted(p.name for p in (out / "fgs").iterdir())
    assert files == ["shard-00000.jsonl", "shard-00000.safetensors"]  # no temporary file, no partial shard
    monkeypatch.setattr(io, "_fsync", real)
    assert main(gen(out)) == 0 and len(AdversarialDataset(out)) == 24


@pytest.mark.parametrize("args,match", [
    (["--attack", "nope"], "unknown attack 'nope'"),
    (["--attack", "fgs", "-o", "colour=1"], "unknown option"),
    (["--attack", "fgs", "-o", "eps=big"], "option eps='big'"),
    (["--attack", "fgs", "--model", "no_such_pkg.mod:make"], "does not import"),
    (["--attack", "fgs", "--model", "collections:OrderedDict"], "not a torch.nn.Module"),
    (["--attack", "fgs", "--model", "json:dumps"], "the factory raised TypeError"),
    (["--attack", "fgs", "--data", "digits8:test"], "do not fit the model"),
    (["--attack", "fgs", "--classes", "11"], "no input images left"),
    (["--attack", "fgs"], "--out is required"),
])
def test_bad_input_exits_2(args, match, tmp_path, digits_cnn, cache_dir):
    r = run("generate", *args, *(["--out", str(tmp_path / "o")] if "--out is required" not in match else []),
            "--quiet")
    assert r.returncode == 2, r.stderr
    assert match in r.stderr


def test_bad_weights_and_output_file(tmp_path, digits_cnn, cache_dir):
    from safetensors.torch import save_file

    mod = tmp_path / "mymodels.py"
    mod.write_text("import torch\n\ndef make():\n    return torch.nn.Sequential(torch.nn.Flatten(), "
                   "torch.nn.Linear(784, 10))\n")
    save_file({"1.weight": torch.zeros(10, 5), "1.bias": torch.zeros(10)}, str(tmp_path / "w.safetensors"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = run("generate", "--attack", "fgs", "--model", "mymodels:make", "--weights", str(tmp_path / "w.safetensors"),
            "--out", str(tmp_path / "o"), "--quiet", env=env)
    assert r.returncode == 2 and "shapes differ for 1.weight" in r.stderr
    (tmp_path / "afile").write_text("x")
    r = run(*gen(tmp_path / "afile"))
    assert r.returncode == 2 and "is a file" in r.stderr


def test_a_job_pins_auto_precision_to_a_fixed_one(monkeypatch):
    """precision="auto" in a job becomes one precision before the job starts (a timing could
    choose differently in another process, and a resumed job must give the same bytes)."""
    from pyadv.data.generate import Part, _pinned

    monkeypatch.setattr("pyadv.attacks._precision.native_precisions", lambda device: ["bf16"])
    assert _pinned(Part("pgd", {"precision": "auto"}), 8, "cpu")["precision"] == "bf16"
    assert _pinned(Part("jsma", {"precision": "auto"}), 8, "cpu")["precision"] == "fp32"  # auto keeps fp32 there
    assert _pinned(Part("pgd", {"precision": "bf16"}), 8, "cpu")["precision"] == "bf16"
    monkeypatch.setattr("pyadv.attacks._precision.native_precisions", lambda device: [])
    assert _pinned(Part("pgd", {"precision": "auto"}), 8, "cpu")["precision"] == "fp32"


def test_manifest_lines_are_json_dumps_with_sorted_keys():
    from pyadv.data.generate import manifest_lines

    columns = {"row": [0, 1, 2], "label": [3, -1, 0], "prob": [0.5, float("nan"), 1e-300],
               "success": [True, False, True], "kind": ["fgs", 'a "quoted"\nname', "ü"], "scale": [None, 1.05, None],
               "big": [2 ** 70, 0, -5], "inf": [float("inf"), float("-inf"), -0.0],
               # one type per column (the fast paths): finite floats, None only
               "l2": [0.1, 2.5, 1e20], "target": [None, None, None]}
    constant = {"options": {"eps": 0.1, "nested": {"z": [1, 2], "a": None}}, "versions": {"torch": "2.13"},
                "attack": "fgs", "seed": 7}
    got = manifest_lines(columns, constant)
    want = [json.dumps({**constant, **{k: v[i] for k, v in columns.items()}}, sort_keys=True) for i in range(3)]
    assert got == want
    assert manifest_lines({}, constant) == []


def test_atomic_write_flushes_the_file_and_its_folder(tmp_path, monkeypatch):
    from pyadv import _io

    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(_io.os, "fsync", spy)
    old_mask = os.umask(0o027)
    try:
        _io.write_text_atomic(tmp_path / "a.txt", "hello")
    finally:
        os.umask(old_mask)
    assert (tmp_path / "a.txt").read_text() == "hello"
    # the mode open() would have given (not mkstemp's owner-only 0600): a dataset others can read
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    assert len(synced) == 2 and synced[0].startswith(str(tmp_path / ".a.txt.")) and synced[1] == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_rounded_json_is_the_json_of_the_rounded_value():
    """The manifest's float columns, written by "%.7g": the same text as json.dumps of the value
    rounded to 7 significant digits, on random values of every magnitude and the edge cases."""
    import random

    from pyadv.data.generate import _round, rounded_json

    rng = random.Random(0)
    values = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-5, 1.5e-7, 1e-4, 0.0001234567, 123456.7, 1234567.0, 9999999.4,
              9999999.6, 1e7, 12345678.9, 1e16, 1e300, 5e-324, float("nan"), float("inf"), float("-inf"), 784.0,
              0.99999995, 0.123456749999, 0.12345675]
    values += [rng.uniform(-1, 1) * 10 ** rng.uniform(-12, 20) for _ in range(5000)]
    values += [float(rng.randint(0, 10 ** 8)) for _ in range(500)]
    got = rounded_json(values)
    assert list(got) == [json.dumps(_round(v)) for v in values]
