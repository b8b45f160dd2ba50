"""The process test_kill.py kills: ``python kill_child.py MODE ARG...``.

Modes:
    load NAME [REVISION]    load a custom pipeline (trust_remote_code) and print its class name
    loadmany NAME[@REV]...  load each (test_load.py); print ``LOADED name class digest`` per name
    save SOURCE TARGET      load the pipeline folder SOURCE and save_pretrained it to TARGET

``PIPEYARD_TEST_KILL_AT=N`` (a test-only variable) makes the process SIGKILL itself right
after its N-th file-system step of interest: an ``os.replace`` / ``os.rename``, a
``renameat2`` folder swap, or a write of a temp file; the sweep walks N over every step.
``PIPEYARD_TEST_NO_EXCHANGE=1`` takes away the one-step folder swap (the two-rename fallback).
Prints ``STEPS <n>`` at the end: how many steps a run that is not killed takes.
"""

from __future__ import annotations

import os
import signal
import sys

_STEPS = 0
_KILL_AT = int(os.environ.get("PIPEYARD_TEST_KILL_AT", "0") or 0)


def _step() -> None:
    global _STEPS
    _STEPS += 1
    if _STEPS == _KILL_AT:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def _counting(function):
    def wrapped(*args, **kwargs):
        result = function(*args, **kwargs)
        _step()
        return result

    return wrapped


def _install_kill_points() -> None:
    from pipeyard import fileio

    os.replace = _counting(os.replace)
    os.rename = _counting(os.rename)
    exchange = fileio.exchange_folders
    if os.environ.get("PIPEYARD_TEST_NO_EXCHANGE"):
        fileio.exchange_folders = lambda staging, target: False
    else:
        fileio.exchange_folders = _counting(exchange)
    original_mkstemp = fileio.tempfile.mkstemp

    def mkstemp(*args, **kwargs):  # the temp file exists, empty: a write cut at its start
        result = original_mkstemp(*args, **kwargs)
        _step()
        return result

    fileio.tempfile.mkstemp = mkstemp


def main(argv: list[str]) -> None:
    _install_kill_points()
    mode = argv[0]
    if mode == "load":
        from pipeyard.host import load_pipeline_class

        revision = argv[2] if len(argv) > 2 else None
        cls = load_pipeline_class(argv[1], custom_revision=revision, trust_remote_code=True)
        print("CLASS", cls.__name__)
    elif mode == "loadmany":
        from pipeyard.host import load_pipeline_class

        for spec in argv[1:]:
            name, _, revision = spec.partition("@")
            cls = load_pipeline_class(name, custom_revision=revision or None, trust_remote_code=True)
            print("LOADED", spec, cls.__name__, cls.__pipeyard_provenance__.sha256, flush=True)
    elif mode == "save":
        from pipeyard import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(argv[1])
        print("LOADED", flush=True)
        pipe.save_pretrained(argv[2])
        print("SAVED")
    print("STEPS", _STEPS)


if __name__ == "__main__":
    main(sys.argv[1:])
