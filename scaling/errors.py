"""The project's exception: a message a user can act on, and the one-line form of any error.

The CLI prints it as one line (``error: ...``) and exits with code 2, without a
traceback. Name the file, row, column or constraint in the message.
"""

__all__ = ["MoescaleError", "first_line"]


class MoescaleError(Exception):
    """Bad input or an impossible request; the message says what and where."""


def first_line(exc: BaseException, *, with_type: bool = False) -> str:
    """The first line of an exception's message (its type name when the message is empty).

    ``with_type`` prefixes the type name (``ValueError: ...``), for errors recorded from
    foreign code where the type is part of the story (a failed training run).
    """
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if with_type:
        return f"{type(exc).__name__}: {text}".rstrip(": ")
    return text or type(exc).__name__
