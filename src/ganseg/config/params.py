"""The whole ``params.yaml``: the shared block and one block per stage."""

from __future__ import annotations

from ganseg.config.augment import AugmentConfig
from ganseg.config.base import StrictModel
from ganseg.config.common import CommonConfig
from ganseg.config.evaluate import EvaluateConfig
from ganseg.config.finetune import FinetuneConfig
from ganseg.config.predict import PredictConfig
from ganseg.config.prepare import PrepareConfig
from ganseg.config.train import TrainConfig


class Params(StrictModel):
    common: CommonConfig = CommonConfig()
    prepare: PrepareConfig = PrepareConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    predict: PredictConfig = PredictConfig()
    train: TrainConfig = TrainConfig()
    augment: AugmentConfig = AugmentConfig()
    finetune: FinetuneConfig = FinetuneConfig()
