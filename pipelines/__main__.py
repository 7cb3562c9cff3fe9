"""``python -m pipelines <stage>``: the root command joining one sub-app per stage."""

from __future__ import annotations

import typer

from pipelines import prepare

app = typer.Typer(
    name="pipelines",
    help="ganseg stages. dvc.yaml calls these; each reads its block of params.yaml.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(prepare.app, name="prepare")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
