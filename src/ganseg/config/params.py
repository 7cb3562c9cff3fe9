"""The whole ``params.yaml``: the shared block and one block per stage."""

from __future__ import annotations

from ganseg.config.base import StrictModel
from ganseg.config.common import CommonConfig
from ganseg.config.prepare import PrepareConfig


class Params(StrictModel):
    common: CommonConfig = CommonConfig()
    prepare: PrepareConfig = PrepareConfig()
