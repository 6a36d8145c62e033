"""Options shared by the commands that act on an instance."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="State directory of a `blindstore dev` instance.")
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Settings file of a production instance.")
]
