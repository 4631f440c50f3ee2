"""`moescale datasets`: not yet available."""


def register(sub) -> None:
    pass
