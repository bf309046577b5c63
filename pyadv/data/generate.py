"""Adversarial dataset generation: shards plus a manifest, resumable, split across ranks.

Layout of an output folder::

    job.json                      what made it (compared on every rerun)
    <part>/shard-00000.safetensors   images (uint8 when the attack quantizes, else float32),
                                     labels, index (the clean images' rows in the input)
    <part>/shard-00000.jsonl         one manifest line per sample of that shard
    manifest.jsonl                the shards' lines in order (written last, by rank 0)
    README.md, *.png              the dataset card

Shards are the unit of work and of resume: each is written atomically (temporary name,
fsync, rename), its lines after it, so a kill at any moment loses at most the shard in flight.
Every random number of an attack is keyed by the source image's index, and the plan of the
model runner (chunk size, search copy) is fixed for the job, so a shard's bytes do not depend
on the process, the rank or an interruption: rerunning the command finishes the same dataset.
Shard k of the job goes to rank k mod world size (torchrun), so any number of ranks writes
the same files.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .._digest import tensors_sha256
from .._io import stale_temporaries, write_bytes_atomic, write_json_atomic, write_text_atomic
from .sources import Source, as_unit_float

log = logging.getLogger(__name__)
FORMAT = "pyadv.AdversarialDataset/1"


@dataclass
class Part:
    """One attack of a job: its registry name, options, and the folder name of its shards."""
    attack: str
    options: dict = field(default_factory=dict)
    name: str = ""

    def __post_init__(self):
        self.name = self.name or self.attack


def parse_parts(items: list) -> list[Part]:
    """Parts from a config's ``attacks`` list: each a registry name or {attack, options, name}."""
    from ..attacks import attack_class

    parts = []
    for i, it in enumerate(items):
        if isinstance(it, str):
            it = {"attack": it}
        if not isinstance(it, dict) or "attack" not in it:
            raise ValueError(f"attacks[{i}] must be an attack name or a mapping with 'attack' (and 'options', "
                             f"'name'), got {it!r}")
        unknown = set(it) - {"attack", "options", "name"}
        if unknown:
            raise ValueError(f"attacks[{i}]: unknown key(s) {', '.join(sorted(unknown))} (allowed: attack, options, "
                             "name)")
        cls = attack_class(it["attack"])
        opts = dict(it.get("options") or {})
        cls.validated_options(**opts)  # now, before any work: names, types, ranges
        parts.append(Part(it["attack"], opts, it.get("name") or it["attack"]))
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise ValueError(f"two attacks share a part name ({names}); give each a distinct 'name'")
    if not parts:
        raise ValueError("no attack given")
    return parts


def load_config(path: str | os.PathLike) -> dict:
    """A YAML or JSON job config (a mapping; ``attacks`` is its list of parts)."""
    text = Path(path).read_text()
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        cfg = yaml.safe_load(text)
    else:
        cfg = json.loads(text)
    if not isinstance(cfg, dict):
        raise ValueError(f"config {path}: expected a mapping at the top, got {type(cfg).__name__}")
    return cfg


def _pinned(part: Part, batch_size: int, device) -> dict:
    """The part's options with the runner's plan fixed (same bytes in every process): the chunk
    size, the search copy, and for ``precision="auto"`` the device's first native reduced
    precision (float32 where it has none, or where the attack keeps float32 under "auto")
    instead of a timing."""
    from ..attacks import attack_class
    from ..attacks._precision import native_precisions, precision_name

    opts = dict(part.options)
    opts.setdefault("chunk_size", batch_size)
    opts.setdefault("search_copy", True)
    if precision_name(opts.get("precision", "fp32")) == "auto":
        native = native_precisions(torch.device(device)) if attack_class(part.attack).auto_reduced else []
        opts["precision"] = native[0] if native else "fp32"
    return opts


def select_images(source: Source, classes: Optional[list], limit: Optional[int]) -> torch.Tensor:
    idx = torch.arange(len(source))
    if classes:
        keep = torch.zeros(len(source), dtype=torch.bool)
        for c in classes:
            keep |= source.labels == int(c)
        idx = idx[keep]
    if limit is not None:
        idx = idx[:limit]
    if not len(idx):
        raise ValueError(f"no input images left after filtering (classes={classes}, limit={limit}) from "
                         f"{len(source)} in {source.name}")
    return idx


class JobRefused(ValueError):
    """The output folder cannot take this job (a file; another job; files of something else)."""


#: job.json keys added after its format was first used: absent from an older job, they are not
#: compared (and are recorded from then on)
_RECORDED_SINCE = ("model_sha256", "data_sha256")


def _job(parts, model, model_spec, weights_digest, source, selection, seed, batch_size, device) -> dict:
    import hashlib

    return {
        "format": FORMAT,
        "parts": [{"name": p.name, "attack": p.attack, "options": _pinned(p, batch_size, device)} for p in parts],
        "model": model_spec, "weights_sha256": weights_digest, "data": source.name,
        # what the model and the input are, not only their names: the same name with other weights
        # (a zoo model trained again) or the same path with other images would make a resumed
        # dataset of two jobs. A folder's is its listing, with each file's size and time.
        "model_sha256": tensors_sha256(model.state_dict().items()),
        "data_sha256": source.digest() if hasattr(source, "digest") else None,
        "selection_sha256": hashlib.sha256(selection.numpy().tobytes()).hexdigest(), "images": len(selection),
        "seed": seed, "batch_size": batch_size, "device": str(device),
    }


def _check_job(out: Path, job: dict, overwrite: bool) -> bool:
    """Raises if ``out`` (a folder: the lock has made sure) cannot take this job; True when its
    content must be cleared first (another job, or other files, and ``overwrite``)."""
    path = out / "job.json"
    if not path.exists():
        content = out.exists() and any(p.name != LOCK for p in out.iterdir())
        if content and not overwrite:
            raise JobRefused(f"output folder {out} is not empty and holds no pyadv job; choose another or pass "
                             "--overwrite")
        return content
    old = json.loads(path.read_text())
    for key in _RECORDED_SINCE:  # a job started before pyadv recorded it: nothing to compare
        old.setdefault(key, job[key])
    if old == job:
        return False
    differ = sorted(k for k in set(old) | set(job) if old.get(k) != job.get(k))
    if not overwrite:
        changed = {"model_sha256": f"the model {job['model']}'s weights", "data_sha256": f"the input {job['data']}"}
        if set(differ) <= set(changed):
            what = " and ".join(map(changed.get, differ))
            raise JobRefused(f"output folder {out} holds a job of this command, but {what} changed since that job "
                             f"started (differs in: {', '.join(differ)}; for a folder of images: files added, "
                             "removed or modified); resuming would make one dataset of two: restore them, or pass "
                             "--overwrite to start again")
        raise JobRefused(f"output folder {out} holds a different job (differs in: {', '.join(differ)}); rerun the "
                         "same command to resume it, or pass --overwrite to replace it")
    log.info("replacing the job in %s (differs in %s)", out, ", ".join(differ))
    return True


def _clear(out: Path) -> None:
    for p in out.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        elif p.name != LOCK:  # held by this job
            p.unlink()


#: the file a running job holds locked in its output folder
LOCK = ".pyadv-generate.lock"


@contextlib.contextmanager
def _output_lock(out: Path):
    """Holds ``out``'s lock for a job (rank 0's, under torchrun): a second job on the same folder,
    say the same command started again while the first still runs, is refused instead of
    writing beside it (and losing the files whose half-written temporaries a resume removes).
    Where fcntl is missing (Windows) the folder is not locked."""
    if out.exists() and not out.is_dir():
        raise JobRefused(f"output {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise JobRefused(f"output folder {out} is being written by another pyadv generate (process {holder}); "
                             "wait for it to finish, or choose another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _samples(result, part: Part, index: torch.Tensor) -> dict:
    """One row per sample of an attack result: the image itself for most attacks; every kept
    direction and hard positive for hot/cold (with the class and probability its search
    measured; queries are those of its source image)."""
    if "dir_adv" in result.extras:
        from ..attacks import hot_cold_samples

        s = hot_cold_samples(result)
        src = s["source"]
        kinds = s["kind"]
        scale = [float(k.rsplit("-", 1)[1]) if k.count("-") == 3 else None for k in kinds]
        pred = s["pred"]
        tgt = result.target[src]
        return {"images": s["images"], "label": s["label"], "pred": pred, "source": src,
                "index": index[src.cpu()], "kind": kinds, "scale": scale,
                "success": torch.where(tgt >= 0, pred == tgt, pred != s["label"]), "target": tgt,
                "prob": s["prob"], "queries": result.queries[src], "pass": s["pass"]}
    n = len(result)
    src = torch.arange(n, device=result.adv.device)
    return {"images": result.adv, "label": result.y, "pred": result.pred, "source": src, "index": index,
            "kind": [part.attack] * n, "scale": [None] * n, "success": result.success, "target": result.target,
            "prob": result.probs.gather(1, result.pred[:, None])[:, 0], "queries": result.queries,
            "norms": {"l0": result.l0, "l2": result.l2, "linf": result.linf}}


def _metrics(adv: torch.Tensor, x: torch.Tensor, known_pass: Optional[torch.Tensor] = None,
             known_norms: Optional[dict] = None) -> dict:
    """L0, L2, L-inf, SSIM and PASS of every sample; ``known_pass`` (NaN where unknown) and
    ``known_norms`` (L0, L2, L-inf of these very samples) are what the attack's result already
    holds, not computed twice."""
    from ..metrics import lp_norms, pass_score, ssim

    n = known_norms if known_norms is not None else lp_norms(adv, x)
    out = {k: n[k].double().cpu() for k in ("l0", "l2", "linf")}
    big = min(x.shape[-2:]) >= 11  # SSIM's window
    out["ssim"] = ssim(adv, x, data_range=1.0).double().cpu() if big and len(x) else None
    out["pass"] = None
    if big and len(x):
        ps = torch.full((len(x),), float("nan"), dtype=torch.float64) if known_pass is None \
            else known_pass.double().cpu().clone()
        todo = ps.isnan().nonzero().flatten()
        if len(todo) == len(x):  # every sample (no copies of the images)
            ps = pass_score(adv, x).double().cpu()
        elif len(todo):
            ps[todo] = pass_score(adv[todo.to(adv.device)], x[todo.to(x.device)]).double().cpu()
        out["pass"] = ps
    return out


def _round(v: Optional[float]) -> Optional[float]:
    return None if v is None else float(f"{v:.7g}")


def _json_value(v) -> str:
    """json.dumps of a manifest field's scalar, without its per-call setup (which, per line and
    field, was most of the time it took to write a one-step attack's shard)."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return int.__repr__(v)
    if isinstance(v, float) and math.isfinite(v):
        return float.__repr__(v)
    return json.dumps(v)


_BOOL_TEXT = {True: "true", False: "false"}.__getitem__


class _Encoded(list):
    """A manifest column whose values are already JSON text."""


def rounded_json(values: list[float]) -> _Encoded:
    """The JSON of each value rounded to 7 significant digits, ``_json_value(_round(v))``, as
    "%.7g" writes it: the same digits (repr of a double read from at most 15 digits gives those
    digits back), with the ".0" repr puts on whole numbers; where the two forms may part
    (exponents above 6, subnormals, NaN, infinities) the value goes the long way. The column is
    formatted by one call, and looked at value by value only where it holds an exponent, a NaN
    or an infinity: a small fraction of the time per value."""
    if not values:
        return _Encoded()
    text = ("%.7g\n" * len(values)) % tuple(values)
    texts = text.split("\n")
    texts.pop()
    if "e" not in text and "n" not in text:  # plain decimals only
        return _Encoded([t if "." in t else t + ".0" for t in texts])
    out = _Encoded()
    for v, t in zip(values, texts):
        if "e+" in t or "n" in t or "e-3" in t:  # 1e+07; nan, inf; 1e-3xx (and 1e-3x) for subnormals
            t = _json_value(_round(v))
        elif "." not in t and "e" not in t:
            t += ".0"
        out.append(t)
    return out


def _json_column(values: list) -> list[str]:
    """_json_value of every value of a column, by the column's one type where it has one (the
    columns of a shard are ints, finite floats, bools or None: mapped in C, not value by value)."""
    kinds = set(map(type, values))
    if kinds == {int}:
        return list(map(int.__repr__, values))
    if kinds == {float} and all(map(math.isfinite, values)):
        return list(map(float.__repr__, values))
    if kinds == {bool}:
        return list(map(_BOOL_TEXT, values))
    if kinds == {type(None)}:
        return ["null"] * len(values)
    if kinds == {str}:  # a few distinct names (the attack, hot/cold's kinds): each encoded once
        return list(map({v: json.dumps(v) for v in set(values)}.__getitem__, values))
    return list(map(_json_value, values))


def manifest_lines(columns: dict[str, list], constant: dict) -> list[str]:
    """One JSON object per row, keys sorted: exactly ``json.dumps({**constant, **row},
    sort_keys=True)``, with the constant fields (options, versions, ...) encoded once and each
    column's fields encoded column by column."""
    n = len(next(iter(columns.values()))) if columns else 0
    fields = []
    for k in sorted({*columns, *constant}):
        if k in columns:
            col = columns[k]
            texts = col if isinstance(col, _Encoded) else _json_column(col)
            fields.append(list(map(f"{json.dumps(k)}: ".__add__, texts)))
        else:
            fields.append([f"{json.dumps(k)}: {json.dumps(constant[k], sort_keys=True)}"] * n)
    return ["{" + ", ".join(row) + "}" for row in zip(*fields)]


def _shard_path(out: Path, part: Part, k: int) -> Path:
    """Shard k's tensor file; its manifest lines are the same name with .jsonl."""
    return out / part.name / f"shard-{k:05d}.safetensors"


def _shard_bytes(rows: dict, quantized: bool) -> bytes:
    """The shard's safetensors file, as bytes: serialized here, in a fraction of a millisecond,
    so that the thread that writes it spends its time waiting on the disk, not holding the GIL."""
    from safetensors.torch import save

    imgs = rows["images"].detach().cpu()
    # in place on one new buffer: each fresh buffer of a shard's size costs page faults
    imgs = imgs.mul(255).round_().clamp_(0, 255).to(torch.uint8) if quantized else imgs.float()
    tensors = {"images": imgs.contiguous(), "labels": rows["label"].cpu().long().contiguous(),
               "index": rows["index"].cpu().long().contiguous()}
    return save(tensors, metadata={"format": FORMAT})


def _write_lines(shard: Path, part: Part, rows: dict, metrics: dict, seed: int, options: dict,
                 versions: dict) -> None:
    """The shard's manifest lines (its .jsonl, written atomically: once it exists, the shard is
    done). Call it once the shard's tensors are on disk."""
    n = len(rows["label"])
    as_list = lambda v: v.detach().cpu().tolist() if isinstance(v, torch.Tensor) else list(v)
    rounded = lambda v: [None] * n if v is None else rounded_json(as_list(v))
    columns = {"row": list(range(n)), "source_index": as_list(rows["index"]), "label": as_list(rows["label"]),
               "target": [t if t >= 0 else None for t in as_list(rows["target"])], "pred": as_list(rows["pred"]),
               "prob": rounded(rows["prob"]), "success": [bool(v) for v in as_list(rows["success"])],
               "kind": list(rows["kind"]), "scale": list(rows["scale"]), "queries": as_list(rows["queries"]),
               **{m: rounded(metrics[m]) for m in ("l0", "l2", "linf", "ssim", "pass")}}
    constant = {"part": part.name, "attack": part.attack, "file": f"{part.name}/{shard.name}", "seed": seed,
                "options": options, "versions": versions}
    write_text_atomic(shard.with_suffix(".jsonl"), "".join(line + "\n" for line in manifest_lines(columns, constant)))


def read_lines(path: Path, text: Optional[str] = None) -> list[dict]:
    """The manifest lines of one file (``text``: its content, if already read), with an error
    naming the file and line that does not parse."""
    lines = (path.read_text() if text is None else text).splitlines()
    try:  # all lines in one parse; line by line only to name the line that does not parse
        out = json.loads("[" + ",".join(lines) + "]")
        if len(out) == len(lines) and all(isinstance(v, dict) for v in out):
            return out
    except json.JSONDecodeError:
        pass
    out = []
    for n, line in enumerate(lines, 1):
        try:
            v = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {n}: not a manifest line ({e.msg}); delete the file (and its shard) "
                             "and rerun the command to regenerate it") from None
        if not isinstance(v, dict):
            raise ValueError(f"{path} line {n}: not a manifest line (a JSON {type(v).__name__}, not an object); "
                             "delete the file (and its shard) and rerun the command to regenerate it")
        out.append(v)
    return out


def check_shard(path: Path, rows: int) -> None:
    """Raises, naming the file, if a shard does not open or does not hold ``rows`` samples."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            n = f.get_slice("labels").get_shape()[0]
    except Exception as e:
        raise ValueError(f"{path}: damaged shard ({type(e).__name__}: {e}); delete it and its .jsonl and rerun the "
                         "command to regenerate it") from None
    if n != rows:
        raise ValueError(f"{path}: holds {n} samples but its manifest lines say {rows}")


def generate(out: str | os.PathLike, parts: list[Part], model: nn.Module, source: Source, *, model_spec: str,
             weights_digest: Optional[str] = None, batch_size: int = 256, seed: int = 0,
             limit: Optional[int] = None, classes: Optional[list] = None, device="cpu", overwrite: bool = False,
             progress: bool = True, command: Optional[str] = None, rank: int = 0, world: int = 1,
             barrier=None) -> dict:
    """Generates (or resumes) an adversarial dataset in ``out``; returns a summary dict: counts,
    ``seconds`` (the whole call) and where they went: ``model_s`` (the attacks' model passes),
    ``attack_s`` (the attack calls, model included), ``metrics_s``, ``write_s`` (shards and their
    manifest lines) and ``finish_s`` (the merged manifest and the card, once per job).

    ``rank``/``world``/``barrier``: this process's share of a torchrun job (shard k goes to rank
    k mod world); rank 0 writes the manifest and the card once every rank has finished, and
    holds the output folder's lock for the job."""
    out = Path(out)
    with _output_lock(out) if rank == 0 else contextlib.nullcontext():
        return _generate(out, parts, model, source, model_spec, weights_digest, batch_size, seed, limit, classes,
                         device, overwrite, progress, command, rank, world, barrier)


def _generate(out, parts, model, source, model_spec, weights_digest, batch_size, seed, limit, classes, device,
              overwrite, progress, command, rank, world, barrier) -> dict:
    import pyadv
    from ..attacks import create

    selection = select_images(source, classes, limit)
    job = None  # rank 0's: the other ranks neither check nor write it
    if rank == 0:
        job = _job(parts, model, model_spec, weights_digest, source, selection, seed, batch_size, device)
        if _check_job(out, job, overwrite):
            _clear(out)
        # what a kill left half-written: no other job writes here (the lock), and this job's other
        # ranks wait at the barrier
        for folder in (out, *(out / p.name for p in parts)):
            for tmp in stale_temporaries(folder):
                tmp.unlink(missing_ok=True)
        write_json_atomic(out / "job.json", job)
    if barrier:
        barrier()
    versions = {"pyadv": pyadv.__version__, "torch": torch.__version__}
    model = model.to(device).eval()
    shards = [(p, k) for p in parts for k in range((len(selection) + batch_size - 1) // batch_size)]
    mine = [(g, p, k) for g, (p, k) in enumerate(shards) if g % world == rank]
    todo = [(g, p, k) for g, p, k in mine if not _shard_path(out, p, k).with_suffix(".jsonl").exists()]
    done_before = len(mine) - len(todo)
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(selection[k * batch_size:(k + 1) * batch_size]) for _, _, k in todo),
                   unit="img", desc="generate")
    t0 = time.perf_counter()
    n_img = n_ok = 0
    attacks = {}
    spent = {"model_s": 0.0, "attack_s": 0.0, "metrics_s": 0.0, "write_s": 0.0}  # where the time went
    # The shard's tensors go to disk on a worker thread while the metrics are computed (the
    # file's fsync and rename wait on the disk, and torch's ops release the GIL); its manifest
    # lines follow once both are done, so a shard is still complete before its .jsonl exists.
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyadv-shard-writer")
    # A source that reads files (an ImageFolder) decodes the next shard's images on a thread
    # while this shard's attack runs (Pillow's decoders release the GIL), which a GPU's passes
    # would otherwise wait for; a damaged file is still raised when its own shard starts. The
    # thread runs no torch op: one torch op run on a second thread (its own OpenMP team) left
    # the main thread's parallel ops ~25 % slower while that thread lived (PASS of 256 digit
    # pairs 5.4 -> 6.9 ms), 3-5 ms of a one-shard FGS job when every source went through it.
    # Images held in memory are gathered in turn.
    loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyadv-image-loader") if source.decodes else None
    rows_of = lambda k: selection[k * batch_size:(k + 1) * batch_size]
    loading: dict = {}  # shard number k -> its pixels, being read
    try:
        for j, (g, part, k) in enumerate(todo):
            idx = rows_of(k)
            if loader is not None:
                nxt = todo[j + 1][2] if j + 1 < len(todo) else None
                for kk in (k, nxt):
                    if kk is not None and kk not in loading:
                        loading[kk] = loader.submit(source.pixels_of, rows_of(kk))
                pixels = loading[k].result()
                loading = {kk: f for kk, f in loading.items() if kk == nxt}  # only the next shard's is kept
            else:
                pixels = source.pixels_of(idx)
            if part.name not in attacks:
                attacks[part.name] = create(part.attack, model, seed=seed, **_pinned(part, batch_size, device))
            atk = attacks[part.name]
            x = as_unit_float(pixels).to(device)
            y = source.labels[idx].to(device)
            t1 = time.perf_counter()
            r = atk(x, y, index=idx.to(device))
            t2 = time.perf_counter()
            rows = _samples(r, part, idx)
            shard = _shard_path(out, part, k)
            tensors_written = writer.submit(write_bytes_atomic, shard, _shard_bytes(rows, atk.options.quantize))
            clean = r.x[rows["source"]]
            try:
                metrics = _metrics(rows["images"], clean, rows.get("pass"), rows.get("norms"))
            except BaseException:
                wait([tensors_written])  # no write outlives the job; the metrics' error is the one raised
                raise
            t3 = time.perf_counter()
            tensors_written.result()  # its error (a full disk) is the job's
            _write_lines(shard, part, rows, metrics, seed, r.options, versions)
            spent["write_s"] += time.perf_counter() - t3
            spent["metrics_s"] += t3 - t2
            spent["attack_s"] += t2 - t1
            spent["model_s"] += r.profile.get("model_s", 0.0)
            n_img += len(idx)
            n_ok += int(r.success.sum())
            if bar is not None:
                bar.update(len(idx))
                bar.set_postfix(success=f"{n_ok / max(n_img, 1):.0%}", img_s=f"{n_img / (time.perf_counter() - t0):.1f}")
    finally:
        if loader is not None:
            loader.shutdown(wait=True, cancel_futures=True)
        writer.shutdown(wait=True)
        if bar is not None:
            bar.close()
    if barrier:
        barrier()
    summary = {"shards": len(shards), "resumed_shards": done_before, "images_attacked": n_img, **spent,
               "finish_s": 0.0}
    if rank == 0:
        t4 = time.perf_counter()
        summary.update(finish(out, parts, len(selection), batch_size, source, command, job))
        summary["finish_s"] = time.perf_counter() - t4  # manifest and card, once per job
    summary["seconds"] = time.perf_counter() - t0
    return summary


def finish(out: Path, parts: list[Part], n: int, batch_size: int, source: Source, command: Optional[str],
           job: dict) -> dict:
    """Checks every shard, writes manifest.jsonl (the shards' lines in order) and the card
    (``job``: what job.json holds, for the card's provenance)."""
    lines: list[dict] = []
    texts: list[str] = []
    for p in parts:
        for k in range((n + batch_size - 1) // batch_size):
            jl = _shard_path(out, p, k).with_suffix(".jsonl")
            if not jl.exists():
                raise ValueError(f"{jl} is missing: a rank did not finish its shards; rerun the command to resume")
            text = jl.read_text()
            these = read_lines(jl, text)
            check_shard(jl.with_suffix(".safetensors"), len(these))
            lines += these
            texts.append(text if text.endswith("\n") or not text else text + "\n")
    # the shards' lines as written (sorted keys), not parsed and encoded again
    write_text_atomic(out / "manifest.jsonl", "".join(texts))
    from .card import write_card

    write_card(out, lines, source, command, job)
    return {"samples": len(lines), "successes": sum(bool(line["success"]) for line in lines)}


__all__ = ["JobRefused", "select_images", "Part", "parse_parts", "load_config", "generate", "finish", "read_lines",
           "check_shard", "FORMAT"]
