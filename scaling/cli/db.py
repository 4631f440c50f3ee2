"""`moescale db`: not yet available."""


def register(sub) -> None:
    pass
