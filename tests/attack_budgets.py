"""Small budgets per registered attack, shared by the tests that run every attack (an attack
not listed runs with its defaults)."""

FAST = {
    "fipso": {"m": 6, "n_particles": 6, "iters": 3},
    "bim": {"steps": 2},
    "illc": {"steps": 2},
    "pgd": {"steps": 2, "restarts": 2},
    "apgd": {"steps": 4},
    "onepixel": {"pop_size": 8, "iters": 3},
    "sparse_rs": {"k": 4, "n_queries": 20},
    "cw_l2": {"steps": 5, "search_steps": 2},
    "cw_linf": {"steps": 5, "c": 0.1, "max_c": 0.4},
    "cw_l0": {"steps": 5, "c": 0.1, "max_c": 0.4},
    "lbfgs": {"search_steps": 2, "max_iter": 5},
    "jsma": {"upsilon": 0.1},
    "substitute": {"initial": 5, "rounds": 2, "epochs": 1, "white_box_options": {"eps": 0.1}},
    # 8 x 8 images: too small for PASS's SSIM window
    "hotcold": {"classes": 2, "scales": (1.05,), "bisect": 4, "pass_scores": False, "select": "l2"},
}
