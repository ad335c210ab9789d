"""``depth-grid models``: the model zoo's architectures (``grid.zoo.listing``)."""

from __future__ import annotations

from typing import Annotated

import typer


def models(
    tiny: Annotated[bool, typer.Option("--tiny", help="list the tiny (test) variants")] = False,
) -> None:
    """List the registered architectures, their sizes and pretrained weight sources.

    \b
    examples:
      depth-grid models
      depth-grid models --tiny
    """
    from grid.zoo import listing

    print(listing("tiny" if tiny else "base"))
