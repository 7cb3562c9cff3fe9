"""Test helper: torch-fidelity's Inception carrying fid-helper's pool3 weights.

fid-helper's TorchScript file and torch-fidelity's .pth are two exports of the same TF graph.
Copying the TorchScript tensors into torch-fidelity's own module (conv weight; batch norm
beta, mean, var; TF's batch norm has no scale, so gamma = 1) gives an independent reference
pipeline (torch-fidelity's resize, normalisation and layer code) for our extractor, offline.
The classifier head is not in the TorchScript file; callers pass one (e.g. random) for IS tests.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d, FeatureExtractorInceptionV3

from ganseg.metrics.inception import fid_helper_weights_path


class _Skeleton(FeatureExtractorInceptionV3):
    """torch-fidelity's architecture without loading (its constructor would otherwise download)."""

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return None


def torch_fidelity_skeleton(tmp_dir: Path) -> FeatureExtractorInceptionV3:
    empty = tmp_dir / "empty_state.pt"
    torch.save({}, empty)
    return _Skeleton("skeleton", ["2048"], feature_extractor_weights_path=str(empty))


def _script_conv_layers(script: torch.jit.ScriptModule) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """TorchScript Conv2dLayer modules in registration order, with their tensors."""
    state = script.state_dict()
    prefixes = [key[: -len(".weight")] for key in state if key.endswith(".weight")]
    return [(p, {n: state[f"{p}.{n}"] for n in ("weight", "beta", "mean", "var")}) for p in prefixes]


def transplanted_state_dict(
    tmp_dir: Path, fc_weight: torch.Tensor, fc_bias: torch.Tensor
) -> dict[str, torch.Tensor]:
    """A torch-fidelity-format Inception state dict: fid-helper's pool3 weights + the given head."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        script = torch.jit.load(str(fid_helper_weights_path()), map_location="cpu")
    skeleton = torch_fidelity_skeleton(tmp_dir)
    target_convs = [name for name, m in skeleton.named_modules() if isinstance(m, BasicConv2d)]
    source_convs = _script_conv_layers(script)
    assert len(target_convs) == len(source_convs) == 94, (len(target_convs), len(source_convs))
    state = {}
    for target, (source, tensors) in zip(target_convs, source_convs, strict=True):
        expected = skeleton.get_submodule(target).conv.weight.shape
        assert tensors["weight"].shape == expected, (target, source, tensors["weight"].shape, expected)
        state[f"{target}.conv.weight"] = tensors["weight"].clone()
        state[f"{target}.bn.weight"] = torch.ones_like(tensors["beta"])
        state[f"{target}.bn.bias"] = tensors["beta"].clone()
        state[f"{target}.bn.running_mean"] = tensors["mean"].clone()
        state[f"{target}.bn.running_var"] = tensors["var"].clone()
        state[f"{target}.bn.num_batches_tracked"] = torch.tensor(0)
    state["fc.weight"] = fc_weight.clone()
    state["fc.bias"] = fc_bias.clone()
    missing = set(skeleton.state_dict()) ^ set(state)
    assert not missing, sorted(missing)[:5]
    return state


def save_transplanted_weights(tmp_dir: Path, seed: int = 0) -> Path:
    """Write the transplanted state dict with a random classifier head; return its path."""
    generator = torch.Generator().manual_seed(seed)
    fc_weight = torch.randn(1008, 2048, generator=generator) * 0.05
    fc_bias = torch.randn(1008, generator=generator)
    path = tmp_dir / "inception-transplanted.pth"
    torch.save(transplanted_state_dict(tmp_dir, fc_weight, fc_bias), path)
    return path
