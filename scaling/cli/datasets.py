"""`moescale datasets list|path NAME`: the reference dataset registry (scaling.datasets)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("datasets", help="public reference datasets")
    dsub = p.add_subparsers(dest="datasets_command", required=True, metavar="SUBCOMMAND")
    q = dsub.add_parser("list", help="list registered datasets and where a copy is found")
    q.set_defaults(func=cmd_list)
    q = dsub.add_parser("path", help="print a dataset's local path, downloading it when needed")
    q.add_argument("name", metavar="NAME")
    q.set_defaults(func=cmd_path)


def cmd_list(args) -> int:
    from scaling.datasets import REGISTRY, local_copy

    width = max(map(len, REGISTRY))
    for name in sorted(REGISTRY):
        ds = REGISTRY[name]
        found = local_copy(name) or ("not downloaded" if ds.url else "not found (set MOESCALE_DATA)")
        print(f"{name:<{width}}  {ds.filename:<28}  {found}")
        print(f"{'':<{width}}  {ds.description}")
    return 0


def cmd_path(args) -> int:
    from scaling.datasets import path

    print(path(args.name))
    return 0
