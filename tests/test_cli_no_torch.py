"""The commands that only list, verify or inspect never import torch (checked in a fresh interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    from click.testing import CliRunner
    from pipeyard.cli import cli

    root, digest = sys.argv[1], "ab" * 32
    commands = [
        ["list"], ["search", "clip"], ["info", "one_step_unet"], ["info", "clip_guided_stable_diffusion"],
        ["verify", "one_step_unet"], ["verify", "clip_guided_stable_diffusion"],
        ["cache", "list"], ["cache", "verify"], ["cache", "clear", "--yes"],
        ["trust", "add", digest], ["trust", "list"], ["trust", "remove", digest],
        ["registry", "check"], ["new", "fresh_pipe", "--root", root],
        ["verify", root + "/community/fresh_pipe.py"], ["--help"],
    ]
    tree_dependent = (["registry", "check"],)  # fails while someone's community file is untested
    for args in commands:
        result = CliRunner().invoke(cli, args)
        allowed = (0, 1) if args in tree_dependent else (0,)
        assert result.exit_code in allowed and isinstance(result.exception, (SystemExit, type(None))), (
            args, result.output)
        heavy = sorted(m for m in ("torch", "transformers", "numpy", "PIL") if m in sys.modules)
        assert not heavy, f"`pipeyard {' '.join(args)}` imported {heavy}"
    print("ok", len(commands))
""")


def test_listing_verifying_and_inspecting_commands_do_not_import_torch(tmp_path, isolated_home):
    (tmp_path / "community").mkdir()  # `new` writes into a checkout only
    env = {**os.environ, "PIPEYARD_HOME": str(isolated_home / "pipeyard")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "ok 16"
