"""ganseg: segmentation with few labels, helped by GAN-synthesised image/mask pairs.

The library layer: data, networks, losses, metrics, training loops and tracking.
The stage layer that reads ``params.yaml`` and writes files lives in ``pipelines/``.
"""

__version__ = "0.1.0"
