"""First-order Influence on models (paper 000, §2.1, eq. (1) and (5)): per pixel, per pixel
group and per image, batched, with the Jacobian streamed class by class into the compiled
reduction so that memory stays O(B * P)."""
from .comparators import cook_influence, jacobian_norm
from .image import image_fi
from .jacobian import STRATEGIES, make_plan
from .pixel import CONVENTIONS, FISHER, pixel_fi


def log_prob_jacobian(model, x):
    """(J [N, K, P], probs [N, K]): the gradients of all K log-probabilities with respect to
    the P = C*H*W input components. Holds O(N*K*P) memory; :func:`pixel_fi` streams instead."""
    import torch

    from .._model_mode import frozen_eval
    from ._inputs import check_images
    from .jacobian import stream

    check_images(x)
    with frozen_eval(model):
        K = num_classes(model, x) if len(x) else 0
        plan = make_plan(model, x, K, strategy="loop", sub_batch=max(1, len(x)))
        jacs, probs = [], []
        for sb in stream(model, x, plan):
            jacs.append(torch.cat([j for _, j in sb.chunks], 1))
            probs.append(sb.probs)
    if not jacs:
        return x.new_zeros(0, K, x[0].numel() if len(x) else 0), x.new_zeros(0, K)
    return torch.cat(jacs), torch.cat(probs)


from .pixel import num_classes  # noqa: E402

__all__ = ["pixel_fi", "image_fi", "log_prob_jacobian", "jacobian_norm", "cook_influence", "CONVENTIONS",
           "FISHER", "STRATEGIES", "make_plan"]
