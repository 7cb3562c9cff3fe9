"""ganseg: segmentation with few labels, helped by GAN-synthesised image/mask pairs.

The library layer: data, networks, losses, metrics, training loops and tracking.
The stage layer that reads ``params.yaml`` and writes files lives in ``pipelines/``.
"""

import os

__version__ = "0.1.0"

# albumentations asks PyPI for its latest version when imported, which hangs or warns on an
# offline machine and is a connection nobody asked for; ganseg imports it only after this.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
