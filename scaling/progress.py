"""Progress bars on stderr (rich), so stdout stays clean for tables and JSON."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True):
    """Yield ``update(done, total)`` drawing a transient rich progress bar on stderr, or None
    when not ``enabled`` (pass it on as a ``progress=`` callback, e.g. to ``fit``).

    >>> with progress_bar(1000, "bootstrap refits", enabled=sys.stderr.isatty()) as update:
    ...     fit(..., bootstrap=1000, progress=update)
    """
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    task = bar.add_task(description, total=total)
    bar.start()
    try:
        yield lambda done, total: bar.update(task, completed=done)
    finally:
        bar.stop()


def track(items, description: str, enabled: bool = True):
    """``items``, drawing a transient rich progress bar on stderr while they are consumed
    (just ``items`` when not ``enabled``)."""
    if not enabled:
        return items
    from rich.console import Console
    from rich.progress import track as rich_track

    return rich_track(items, description=description, console=Console(stderr=True), transient=True)
