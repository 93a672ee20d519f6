"""``lienthong catalog check FILE``: validate a province catalogue and list every problem.

Exit status: 0 valid, 1 problems found (each printed as ``FILE: path: message``), 2 usage error
(the file cannot be read). Publishing to the compacted ``catalog`` topic needs a broker and is
not part of this command.
"""

from __future__ import annotations

import argparse
import sys

from .catalogue import CatalogueError, load_catalogue


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check"], help="check: validate the file")
    parser.add_argument("file", metavar="FILE", help="catalogue in YAML (or JSON)")


def run(args: argparse.Namespace) -> int:
    path: str = args.file
    try:
        catalogue = load_catalogue(path)
    except OSError as e:
        print(f"lienthong catalog: cannot read {path}: {e.strerror or e}", file=sys.stderr)
        return 2
    except CatalogueError as e:
        for problem in e.problems:
            print(f"{path}: {problem.path}: {problem.message}")
        print(f"{len(e.problems)} problem(s) in {path}", file=sys.stderr)
        return 1
    versions = sum(len(v) for v in catalogue.procedures.values())
    print(f"OK: {len(catalogue.agencies)} agencies, {len(catalogue.procedures)} procedures"
          + (f" ({versions} versions)" if versions != len(catalogue.procedures) else ""))
    return 0
