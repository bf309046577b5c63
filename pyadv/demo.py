"""The `pyadv demo` job: per-pixel FI maps of a few digits for every candidate class
(paper 000, Fig. 2) and FIPSO adversarial images of them (Algorithm 1), as PNG figures
beside a Markdown report, a JSON summary and the saved AttackResult."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from . import ops
from ._io import write_json_atomic, write_text_atomic
from .data import digits
from .attacks import FIPSO
from .evaluate.figures import fi_maps_figure, manhattan_plot, perturbation_figure
from .fi import CONVENTIONS, image_fi, log_prob_jacobian
from .models import pretrained


PICKS = ("vulnerable", "random")


def run_demo(out: str | Path, *, n_images: int = 4, seed: int = 0, device: str = "cpu",
             convention: str = "sa_dnn", pick: str = "vulnerable", progress: bool = True,
             dataset_images: int = 32) -> dict:
    """Writes the demo into ``out``. ``pick="vulnerable"`` takes the correctly classified test
    images with the lowest P(label), i.e. the highest image-level FI (1 - P_y)/P_y, as
    Algorithm 2 of paper 000 would; ``"random"`` draws them with ``seed``."""
    from tqdm.auto import tqdm

    xte, yte = digits("test", 28)
    if not 1 <= n_images <= len(xte):
        raise ValueError(f"n_images must be in [1, {len(xte)}], got {n_images}")
    if pick not in PICKS:
        raise ValueError(f"pick must be one of {PICKS}, got {pick!r}")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {sorted(CONVENTIONS)}, got {convention!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    model = pretrained("digits-cnn", progress=progress).to(device)
    if pick == "random":
        chosen = torch.randperm(len(xte), generator=torch.Generator().manual_seed(seed))[:n_images]
    else:
        with torch.no_grad():
            p = torch.softmax(model(xte.to(device)), 1).cpu()
        p_label = p.gather(1, yte[:, None]).squeeze(1)
        p_label[p.argmax(1) != yte] = float("inf")  # correctly classified ones only
        chosen = torch.argsort(p_label)[:n_images]
    x, y = xte[chosen].to(device), yte[chosen].to(device)

    jac, probs = log_prob_jacobian(model, x)                      # [n, K, P], [n, K]
    eps, rank_tol = CONVENTIONS[convention]
    K = probs.shape[1]
    maps = torch.stack([ops.pixel_fi(jac, probs, torch.full_like(y, k), eps=eps, rank_tol=rank_tol)
                        for k in range(K)], 1).view(n_images, K, *x.shape[1:]).cpu()

    rows = []
    for i in tqdm(range(n_images), desc="FI maps", disable=not progress):
        label, pred = int(y[i]), int(probs[i].argmax())
        png = f"fi_maps_{i}.png"
        fi_maps_figure(x[i], maps[i], probs[i], label, out / png,
                       title=f"test image {int(chosen[i])}: per-pixel FI for each class ({convention})")
        true_map = maps[i, label, 0]
        top = torch.topk(true_map.flatten(), 5)
        W = true_map.shape[-1]
        rows.append({
            "test_index": int(chosen[i]), "label": label, "pred": pred,
            "p_label": float(probs[i, label]),
            "fi_bound": float((1 - probs[i, label]) / probs[i, label]),
            "top_pixels": [{"row": int(j) // W, "col": int(j) % W, "fi": float(v)}
                           for v, j in zip(top.values, top.indices)],
            "figure": png,
        })

    # FIPSO on the same images (Algorithm 1): 20 pixels, rounded to 8-bit values as a PNG keeps them.
    attack = FIPSO(model, m=20, pixels="gradient", n_particles=200, iters=100, seed=seed, quantize=True,
                   progress=progress)
    adv = attack(x, y)
    adv.save(out / "fipso.safetensors")
    perturbation_figure(x, adv.adv, out / "fipso.png",
                        column_titles=[f"test {int(i)}: {int(c)}" for i, c in zip(chosen, y)],
                        captions=[f"{int(p)}: {float(q):.2f}" + ("" if ok else " (failed)")
                                  for p, q, ok in zip(adv.pred, adv.probs.max(1).values, adv.success)],
                        title="FIPSO, m = 20 pixels (largest loss gradient), N_p = 200, T = 100, 8-bit")
    attack_summary = {k: v for k, v in adv.summary().items() if k != "attack"}
    attack_summary["per_image"] = [{"test_index": int(i), "success": bool(ok), "pred": int(p), "l0": int(l0),
                                    "l2": float(l2)} for i, ok, p, l0, l2 in
                                   zip(chosen, adv.success, adv.pred, adv.l0, adv.l2)]

    # A small adversarial dataset of the test split (`pyadv generate`'s pipeline): FIPSO, hot/cold
    # HC-1..9 with hard positives, and first-success PGD, all in 8-bit values.
    from .data import Part, generate, open_source

    parts = [Part("fipso", {"m": 20, "pixels": "gradient", "n_particles": 50, "iters": 30, "quantize": True}),
             Part("hotcold", {"classes": 9, "scales": [1.05], "quantize": True}),
             Part("pgd", {"eps": 0.1, "steps": 20, "stop": "first_success", "quantize": True})]
    generate(out / "dataset", parts, model, open_source("digits:test"), model_spec="digits-cnn", batch_size=32,
             seed=seed, limit=dataset_images, device=device, overwrite=True, progress=progress,
             command=f"pyadv demo --out {out} --seed {seed}")
    dataset_summary = _dataset_summary(out / "dataset")

    # Image-level FI of the whole test split (closed form (1 - P_y)/P_y; paper 000, Fig. 7).
    img_fi = image_fi(model, xte.to(device), yte.to(device)).cpu()
    manhattan_plot(img_fi, yte, out / "manhattan.png", threshold=0.2,
                   title="image-level FI of the digits test split (dashed: Algorithm 2's FI_img = 0.2)")
    above = int((img_fi >= 0.2).sum())

    meta = model.pretrained_meta
    summary = {"model": "digits-cnn", "test_accuracy": meta["test_accuracy"], "convention": convention,
               "pick": pick, "test_images": len(xte), "test_images_fi_above_0.2": above,
               "eps": eps, "rank_tol": rank_tol, "seed": seed, "device": device, "images": rows,
               "fipso": attack_summary, "dataset": dataset_summary,
               "seconds": round(time.perf_counter() - start, 2)}
    write_json_atomic(out / "summary.json", summary)
    write_text_atomic(out / "report.md", _report(summary))
    return summary


def _dataset_summary(folder: Path) -> dict:
    """Samples and successes per part of a generated dataset, from its manifest."""
    from .data.card import part_summary
    from .data.generate import read_lines

    return part_summary(read_lines(folder / "manifest.jsonl"))


def _report(s: dict) -> str:
    lines = [
        "# pyadv demo: per-pixel First-order Influence",
        "",
        f"Model `digits-cnn` (two-convolution BN classifier, paper 004) on scikit-learn's digits at 28x28: "
        f"test accuracy {100 * s['test_accuracy']:.2f} %.",
        "",
        "For each image, one FI map per class k with the objective f = -log P(k) (paper 000, eq. (1) and (5), "
        "omega = the perturbation of one pixel). Bright pixels are those to which the model's belief in k is "
        "most sensitive, measured on the perturbation manifold. Convention: "
        + ("`sa_dnn`: the authors' guards eps = rank_tol = 1e-3, which set to 0 the pixels whose gradients "
           "all but vanish (exact per-pixel FI is scale-free, so such pixels would otherwise rank among the "
           "most influential)." if s["convention"] == "sa_dnn" else "`exact`: eq. (1) as printed."),
        "",
        "Under the exact convention every pixel's FI for the true class is at most (1 - P_y)/P_y, the "
        "image-level FI (column 'bound'); the sa_dnn guards shrink the metric of unlikely classes, so their "
        "values may exceed it. Images: " + ("the correctly classified test images with the lowest P(label)."
                                           if s["pick"] == "vulnerable" else "drawn at random with the seed."),
        "",
        "| test image | label | predicted | P(label) | bound | top pixels for the label (row, col: FI) | figure |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in s["images"]:
        top = "; ".join(f"({p['row']},{p['col']}): {p['fi']:.3g}" for p in r["top_pixels"])
        lines.append(f"| {r['test_index']} | {r['label']} | {r['pred']} | {r['p_label']:.4f} | {r['fi_bound']:.3g} "
                     f"| {top} | [{r['figure']}]({r['figure']}) |")
    lines += [""] + [f"![test image {r['test_index']}]({r['figure']})" for r in s["images"]]
    lines += ["", "## Image-level FI over the test split", "",
              f"{s['test_images_fi_above_0.2']} of {s['test_images']} test images have image-level FI >= 0.2, the "
              "threshold paper 000 uses to pick vulnerable images (Algorithm 2).", "",
              "![Manhattan plot](manhattan.png)"]
    a = s["fipso"]
    lines += ["", "## FIPSO adversarial images (paper 000, Algorithm 1)", "",
              f"The same images attacked with 20 pixels (those with the largest loss gradient), one particle swarm "
              f"of 200 per image for up to 100 iterations, f_A = f0 + 0.001 ||omega||, rounded to 8-bit values: "
              f"{a['successes']} of {a['images']} misclassified, median L2 of the successes "
              f"{a['l2']['median']:.3f}, {a['queries_per_success']:.0f} model queries per success, "
              f"{a['time_s']:.1f} s. The result is saved as `fipso.safetensors` "
              "(`pyadv.attacks.AttackResult.load`).", "", "![FIPSO](fipso.png)"]
    lines += ["", "## An adversarial dataset", "",
              "The first test images attacked by three attacks through the dataset pipeline (`pyadv generate`): "
              "safetensors shards, `manifest.jsonl` and a dataset card in [dataset/](dataset/README.md).", "",
              "| attack | source images | samples | successes |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['images']} | {v['samples']} | {v['successes']} |" for k, v in s["dataset"].items()]
    lines += ["", f"Seed {s['seed']}, device {s['device']}, {s['seconds']} s.", ""]
    return "\n".join(lines)
