"""`moescale plan`: not yet available."""


def register(sub) -> None:
    pass
