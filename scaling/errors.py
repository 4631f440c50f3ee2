"""The project's exception: a message a user can act on.

The CLI prints it as one line (``error: ...``) and exits with code 2, without a
traceback. Name the file, row, column or constraint in the message.
"""


class MoescaleError(Exception):
    """Bad input or an impossible request; the message says what and where."""
