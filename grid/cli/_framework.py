"""The click classes behind depth-grid's typer app: argparse's look, kept where users see it.

- usage lines start with a lowercase ``usage:``, as argparse's did (and the README shows);
- ``depth-grid CMD --help`` prints the help and exits with ``SystemExit(0)``, as argparse did, so
  that ``grid.cli.main`` tells a help page from a command that ran (``depth-grid --help`` itself
  returns 0, as the old dispatcher did);
- an unknown command is named with the valid ones;
- a command's epilog may be a function of its command path, called only when its help is shown
  (``depth-grid run``'s table of spaces imports every space), and printed as it is;
- ``depth-grid --help`` lists the commands in the order of ``grid.cli.COMMANDS``.

Subclasses of typer's own classes, so they work on whichever click typer runs on (its own copy
in newer typer, click itself in older).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup

USAGE_PREFIX = "usage: "


def _help_then_exit(ctx: Any, param: Any, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        print(ctx.get_help())
        raise SystemExit(0)


class Command(TyperCommand):
    """A depth-grid command: lowercase ``usage:``, ``--help`` exits with ``SystemExit(0)``."""

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        formatter.write_usage(ctx.command_path, " ".join(self.collect_usage_pieces(ctx)), prefix=USAGE_PREFIX)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.callback = _help_then_exit
        return option

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        if callable(self.epilog):
            formatter.write_paragraph()
            formatter.write(self.epilog(ctx.command_path).rstrip("\n") + "\n")
        else:
            super().format_epilog(ctx, formatter)


class Group(TyperGroup):
    """The depth-grid command group (and ``depth-grid weights``): lowercase ``usage:``, an
    unknown command answered with the valid ones, ``--help`` of a sub-group exits like a command's."""

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        formatter.write_usage(ctx.command_path, " ".join(self.collect_usage_pieces(ctx)), prefix=USAGE_PREFIX)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None and ctx.parent is not None:
            option.callback = _help_then_exit
        return option

    def list_commands(self, ctx: Any) -> list[str]:
        from grid.cli import COMMANDS

        order = list(COMMANDS)
        return sorted(super().list_commands(ctx), key=lambda n: order.index(n) if n in order else len(order))

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            ctx.fail(f"unknown command {name!r}; valid: {', '.join(self.list_commands(ctx))}")
        return super().resolve_command(ctx, args)
