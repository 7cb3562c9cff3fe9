"""``python -m pipelines <stage>``: the root command joining one sub-app per stage."""

from __future__ import annotations

import typer

from pipelines import aggregate, evaluate, predict, prepare
from pipelines import augment as augment_stage
from pipelines import finetune as finetune_stage
from pipelines import train as train_stage

app = typer.Typer(
    name="pipelines",
    help="ganseg stages. dvc.yaml calls these; each reads its block of params.yaml.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(prepare.app, name="prepare")
app.add_typer(augment_stage.app, name="augment")
app.add_typer(train_stage.app, name="train")
app.add_typer(evaluate.app, name="evaluate")
app.add_typer(predict.app, name="predict")
app.add_typer(aggregate.app, name="aggregate")
app.add_typer(finetune_stage.app, name="finetune")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
