"""`moescale fit`: not yet available."""


def register(sub) -> None:
    pass
