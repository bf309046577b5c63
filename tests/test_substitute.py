"""The substitute black-box attack (Papernot et al. 2017): label-only oracle, Jacobian-based
augmentation, transfer of a white-box attack on the substitute."""
import pytest
import torch
from torch import nn

from pyadv.attacks import FGS, SubstituteAttack, train_substitute
from pyadv.attacks.substitute import oracle_labels, transfer_table


@pytest.fixture(scope="module")
def oracle_and_data(digits_cnn):
    from pyadv.data import digits

    x, y = digits("test", 28)
    return (lambda v: digits_cnn(v).argmax(1)), x, y


@pytest.fixture(scope="module")
def substitute(oracle_and_data):
    oracle, x, _ = oracle_and_data
    return train_substitute(oracle, x[:150], 10, seed=0)


def test_substitute_agrees_with_the_oracle(substitute, oracle_and_data):
    oracle, x, _ = oracle_and_data
    # S_0 of 150 images doubles each of the 5 augmentation rounds; only new points are queried
    assert [h["train_size"] for h in substitute.history] == [150 * 2 ** k for k in range(6)]
    assert substitute.oracle_queries == 150 * 32
    assert substitute.agreement(oracle, x[150:]) >= 0.7


def test_transferred_fgsm_beats_noise_of_the_same_linf(substitute, oracle_and_data, digits_cnn):
    oracle, x, y = oracle_and_data
    xa, ya = x[150:406], y[150:406]
    adv = FGS(substitute.model, eps=0.3)(xa, ya).adv
    noise = (xa + 0.3 * torch.randn(xa.shape, generator=torch.Generator().manual_seed(0)).sign()).clamp(0, 1)
    with torch.no_grad():
        transfer = (digits_cnn(adv).argmax(1) != ya).float().mean()
        random = (digits_cnn(noise).argmax(1) != ya).float().mean()
    assert transfer > random + 0.2, (transfer, random)


def test_transfer_table_per_eps(substitute, oracle_and_data):
    oracle, x, y = oracle_and_data
    t = transfer_table(substitute, oracle, x[150:278], y[150:278], eps=(0.1, 0.3))
    assert t["agreement"] >= 0.7 and t["oracle_queries"] == 4800
    assert [r["eps"] for r in t["rows"]] == [0.1, 0.3]
    assert t["rows"][1]["transfer_success"] >= t["rows"][0]["transfer_success"]
    assert all(r["transfer_success"] > r["noise_success"] for r in t["rows"])


def test_the_attack_class_uses_labels_only_and_reports_queries(digits_cnn, oracle_and_data):
    _, x, y = oracle_and_data

    class LabelsOnly(nn.Module):
        """Logits that carry nothing but the argmax (one-hot), and no gradient."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, v):
            with torch.no_grad():
                return nn.functional.one_hot(self.m(v).argmax(1), 10).float() * 10

    x, y = x[:64], y[:64]
    r = SubstituteAttack(LabelsOnly(digits_cnn), initial=64, rounds=3, epochs=5)(x, y)
    assert int(r.extras["oracle_queries"][0]) == 64 * 4
    assert r.extras["round_train_size"].tolist() == [64, 128, 256]
    assert float(r.extras["substitute_agreement"][0]) > 0.7
    assert r.success.float().mean() > 0.3
    assert (r.adv - x).abs().amax() <= 0.3 + 1e-6


def test_bad_oracle_and_options(oracle_and_data):
    _, x, _ = oracle_and_data
    with pytest.raises(ValueError, match="one integer label per image"):
        oracle_labels(lambda v: torch.zeros(len(v), 10), x[:4])
    with pytest.raises(ValueError, match="one integer label per image"):
        oracle_labels(lambda v: torch.zeros(len(v) - 1, dtype=torch.long), x[:4])
    with pytest.raises(ValueError, match="option white_box="):
        SubstituteAttack(nn.Linear(2, 2), white_box="nope")
    with pytest.raises(ValueError, match="option architecture="):
        SubstituteAttack(nn.Linear(2, 2), architecture="vit")
    with pytest.raises(ValueError, match="option rounds="):
        SubstituteAttack(nn.Linear(2, 2), rounds=0)
    with pytest.raises(ValueError, match="unknown option"):
        SubstituteAttack(nn.Linear(2, 2), white_box_options={"nope": 1})
