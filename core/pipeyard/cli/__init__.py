"""The ``pipeyard`` command line: a thin layer over the library.

Commands parse their arguments, call the public API and print. Expected failures (any
:class:`~pipeyard.errors.PipeyardError`) print ``ErrorType: message`` and exit with status 1;
``--verbose`` shows the traceback too.

One module per area; only ``run`` and ``demo`` import torch (inside the command)::

    registry_cmds.py   list, search, info, registry build|check
    contrib_cmds.py    verify, new (templates in scaffold.py)
    checkout.py        the source checkout (--root) that new and registry build|check share
    cache_cmds.py      cache list|verify|clear
    trust_cmds.py      trust add|list|remove
    run_cmd.py         run (its checks and __call__ arguments in run_args.py)
    __init__.py        the group, the error wrapper, demo
"""

from __future__ import annotations

import sys

import click

from .. import errors


class _PipeyardGroup(click.Group):
    """Turns library errors into one line and exit code 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except errors.PipeyardError as exc:
            if ctx.params.get("verbose"):
                raise
            click.echo(f"{type(exc).__name__}: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=_PipeyardGroup)
@click.option("--verbose", is_flag=True, help="Show tracebacks of expected errors too.")
@click.version_option(package_name="pipeyard")
def cli(verbose: bool) -> None:
    """Share and load community diffusion pipelines."""
    import logging

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s")


@cli.command()
@click.option("--out", "out_dir", default="demo-output", show_default=True, help="Folder for the model and PNGs.")
@click.option("--steps", default=50, show_default=True, help="DDIM steps of the sampled grid.")
@click.option("--t2i-steps", default=20, show_default=True, help="Steps of each text-to-image picture.")
@click.option("--seed", default=0, show_default=True)
def demo(out_dir: str, steps: int, t2i_steps: int, seed: int) -> None:
    """Sample the bundled trained models through built-in and custom pipelines, write PNGs (offline)."""
    from ..demo import run_demo

    run_demo(out_dir, steps=steps, seed=seed, echo=click.echo, t2i_steps=t2i_steps)


def _add_commands() -> None:
    from .cache_cmds import cache_group
    from .contrib_cmds import new, verify
    from .generate_cmd import generate
    from .registry_cmds import info, list_pipelines, registry_group, search
    from .run_cmd import run
    from .trust_cmds import trust_group

    for command in (list_pipelines, search, info, verify, new, run, cache_group, trust_group, registry_group, generate):
        cli.add_command(command)


_add_commands()


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(standalone_mode=True))
