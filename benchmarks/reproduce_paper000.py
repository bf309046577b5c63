"""Paper 000 (Shi et al. 2020), Fig. 4 and Table 2 on the built-in digits and the digits CNN.

The nine customised attacks of Fig. 4 on one test image:
  1-3  m = 1, 3, 7 (the m pixels of largest FI), nothing else asked;
  4-6  P_err = 0.5, 0.75, 0.99, m = #pixels with FI > FI_pixel, FI_pixel in {1, 0.1};
  7-9  targets 0, 2, 4, m = #pixels with FI > 0.1;
with N_p tried in {200, 500, 1000} until a setting succeeds, as the paper tunes FI_pixel and
N_p "to obtain feasible solutions" (T = 100, eps = 1, a = 1, b = 1e-3, run to convergence).
Then Table 2: Perturbation 6 (P_err = 0.99) added to every correctly classified image of
the train and test splits, % misclassified and % sent to its class, per class and in total;
also for "6b", the same request with FI_pixel = 0.1 (many more pixels).

Writes <out>/fig4.png, <out>/paper000.md and <out>/paper000.json.

    python benchmarks/reproduce_paper000.py [--index I] [--out DIR] [--seed S]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pyadv._io import write_json_atomic, write_text_atomic
from pyadv.attacks import FIPSO
from pyadv.data import digits
from pyadv.evaluate import universal_table
from pyadv.fi import image_fi
from pyadv.models import pretrained

SETTINGS = [
    {"name": "1: m = 1", "m": 1},
    {"name": "2: m = 3", "m": 3},
    {"name": "3: m = 7", "m": 7},
    {"name": "4: P_err = 0.5", "p_err": 0.5, "fi_pixel": (1.0, 0.1)},
    {"name": "5: P_err = 0.75", "p_err": 0.75, "fi_pixel": (1.0, 0.1)},
    {"name": "6: P_err = 0.99", "p_err": 0.99, "fi_pixel": (1.0, 0.1)},
    {"name": "7: target 0", "target": 0, "fi_pixel": (0.1,)},
    {"name": "8: target 2", "target": 2, "fi_pixel": (0.1,)},
    {"name": "9: target 4", "target": 4, "fi_pixel": (0.1,)},
    # Not in Fig. 4: Perturbation 6 with the other FI_pixel the paper allows, for Table 2.
    {"name": "6b: P_err = 0.99, FI > 0.1", "p_err": 0.99, "fi_pixel": (0.1,)},
]
PARTICLES = (200, 500, 1000)


def pick_image(model, x, y, index):
    """The given test image, or the correctly classified one with the largest image-level FI
    (the most vulnerable), whose label is none of the targets 0, 2, 4."""
    if index is not None:
        return index
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    fi = image_fi(model, x, y)
    fi[~ok | (y == 0) | (y == 2) | (y == 4)] = -1
    return int(fi.argmax())


def run_setting(model, x1, y1, s, seed):
    """Algorithm 1 for one Fig. 4 setting, escalating FI_pixel and N_p as the paper tunes them."""
    tries = []
    for fi_pixel in s.get("fi_pixel", (None,)):
        for n_p in PARTICLES:
            opts = dict(n_particles=n_p, iters=100, eps=1.0, seed=seed)
            if "m" in s:
                opts["m"] = s["m"]
            if fi_pixel is not None:
                opts["fi_pixel"] = fi_pixel
            if "p_err" in s:
                opts["p_err"] = s["p_err"]
            target = torch.tensor([s["target"]]) if "target" in s else None
            r = FIPSO(model, **opts)(x1, y1, target=target)
            tries.append({"fi_pixel": fi_pixel, "n_particles": n_p, "m": int(r.extras["m"][0]),
                          "success": bool(r.success[0])})
            if bool(r.success[0]) or int(r.extras["m"][0]) == 0:
                if bool(r.success[0]):
                    return r, tries
                break  # no pixel passes this threshold: more particles cannot help
    return r, tries


def figure(path, x1, results):
    from pyadv.evaluate.figures import perturbation_figure

    adv = torch.cat([r.adv for _, r in results])
    captions = [f"{int(r.pred[0])}: {float(r.probs[0].max()):.2f}" + ("" if bool(r.success[0]) else " (failed)")
                for _, r in results]
    perturbation_figure(x1.expand(len(adv), -1, -1, -1), adv, path, column_titles=[s["name"] for s, _ in results],
                        captions=captions, title="Paper 000, Fig. 4 on digits: class: probability of each "
                                                 "adversarial image")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=int, default=None, help="test image (default: the most vulnerable)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "paper000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = pretrained("digits-cnn", progress=False)
    x, y = digits("test", 28)
    i = pick_image(model, x, y, args.index)
    x1, y1 = x[i:i + 1], y[i:i + 1]
    with torch.no_grad():
        p0 = model(x1).softmax(1)[0]
    results, rows = [], []
    for s in SETTINGS:
        r, tries = run_setting(model, x1, y1, s, args.seed)
        results.append((s, r))
        asked_m = s.get("m", "FI > " + "/".join(str(v) for v in s.get("fi_pixel", ())))
        rows.append({"setting": s["name"], "asked_m": asked_m, "m": int(r.extras["m"][0]),
                     "changed_pixels": int(r.l0[0]), "asked_p": s.get("p_err"), "asked_class": s.get("target"),
                     "pred": int(r.pred[0]), "p_pred": float(r.probs[0].max()), "success": bool(r.success[0]),
                     "l2": float(r.l2[0]), "tries": tries})
        print(f"{s['name']:>16}: m {rows[-1]['m']:4d} changed {rows[-1]['changed_pixels']:4d}  class "
              f"{rows[-1]['pred']} p {rows[-1]['p_pred']:.3f}  success {rows[-1]['success']}  L2 {rows[-1]['l2']:.3f}",
              flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    figure(args.out / "fig4.png", x1, results[:9])
    tables = {}
    for key, (s, r6) in (("6", results[5]), ("6b", results[9])):
        for split in ("train", "test"):
            xs, ys = digits(split, 28)
            tables[(key, split)] = universal_table(model, r6.perturbation[0], xs, ys, int(r6.pred[0]))
    md = [f"Test image {i} (label {int(y1)}, P = {float(p0[y1]):.3f}); digits CNN; "
          f"`python benchmarks/reproduce_paper000.py` ({time.perf_counter() - t0:.0f} s).", "",
          "| setting | m asked | m used | pixels changed | P_err asked | class asked | class | probability | "
          "success | L2 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['setting']} | {r['asked_m']} | {r['m']} | {r['changed_pixels']} | {r['asked_p'] or '–'} | "
                  f"{'–' if r['asked_class'] is None else r['asked_class']} | {r['pred']} | {r['p_pred']:.3f} | "
                  f"{'yes' if r['success'] else 'no'} | {r['l2']:.3f} |")
    for (key, split), t in tables.items():
        r = rows[5 if key == "6" else 9]
        md += ["", f"Perturbation {key} (P_err = 0.99, {r['m']} pixels, to class {t['target_class']}) added to the "
                   f"correctly classified {split} images:", "", t["markdown"]]
    write_text_atomic(args.out / "paper000.md", "\n".join(md) + "\n")
    write_json_atomic(args.out / "paper000.json", {
        "image": i, "label": int(y1), "settings": rows,
        "universal": {f"{k}/{split}": {"rows": v["rows"], "total": v["total"], "target_class": v["target_class"]}
                      for (k, split), v in tables.items()}})
    print("\n".join(md))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
