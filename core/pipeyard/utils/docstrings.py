"""``replace_example_docstring``: fill a function's ``Examples:`` placeholder with shared text."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from ..errors import ExampleDocstringError

F = TypeVar("F", bound=Callable[..., object])

#: A docstring line holding only ``Examples:`` (or ``Example:``), any indentation.
_PLACEHOLDER = re.compile(r"^\s*Examples?:\s*$")


def replace_example_docstring(example_docstring: str) -> Callable[[F], F]:
    """Decorator: the first placeholder line of the function's docstring becomes ``example_docstring``.

    The placeholder line is replaced whole, so ``example_docstring`` carries its own heading
    and indentation. The function itself is returned unchanged otherwise.

    Raises:
        ExampleDocstringError: (at decoration) the docstring has no placeholder line.

    Example::

        EXAMPLES = '''
            Examples:
                >>> pipe("a photo of a cat").images[0]
        '''

        @replace_example_docstring(EXAMPLES)
        def __call__(self, prompt):
            '''Generate.

            Examples:
            '''
    """

    def decorate(fn: F) -> F:
        lines = (fn.__doc__ or "").split("\n")
        for i, line in enumerate(lines):
            if _PLACEHOLDER.match(line):
                lines[i] = example_docstring
                fn.__doc__ = "\n".join(lines)
                return fn
        raise ExampleDocstringError(getattr(fn, "__qualname__", repr(fn)))

    return decorate
