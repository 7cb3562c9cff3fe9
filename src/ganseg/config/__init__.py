"""Typed, frozen configuration: one pydantic model per ``params.yaml`` block.

Every stage loads the whole file through :func:`load_params`, so a typo anywhere stops the
stage before it does any work, with one line naming the key and the file.
"""

from ganseg.config.base import StrictModel, load_params, load_yaml
from ganseg.config.common import CommonConfig
from ganseg.config.params import Params

__all__ = ["CommonConfig", "Params", "StrictModel", "load_params", "load_yaml"]
