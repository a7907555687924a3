"""The rule that keeps generators off a user's data: write only into a folder of our own.

``generate_benchmark`` (``adamcu generate``, ``adamcu bench``, ``adamcu loop``) clears and
rewrites the splits it generates. It may do so only in a folder that is missing, empty, or
carries the generator's own ``meta.json``; any other folder is someone's data and is refused
with a message naming the folder and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

GENERATOR = "adamcu.synth"  # the "generator" field of the meta.json the generator writes


class UnsafeFolderError(ValueError):
    """A generator was pointed at a folder it did not create."""


def generated_meta(root: Path) -> dict | None:
    """The generator's meta.json in ``root``, or None when there is none (or it is another's)."""
    path = Path(root) / "meta.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) and meta.get("generator") == GENERATOR else None


def is_generated(root: Path) -> bool:
    """True when ``root`` holds a benchmark written by the bundled generator."""
    return generated_meta(root) is not None


def is_user_dataset(root: Path) -> bool:
    """True when ``root`` holds a dataset (classes.json) that the generator did not write."""
    return (Path(root) / "classes.json").is_file() and not is_generated(root)


def check_generation_target(root: Path) -> None:
    """Refuse to generate into ``root`` unless it is missing, empty or the generator's own."""
    root = Path(root)
    if not root.exists():
        return
    if not root.is_dir():
        raise UnsafeFolderError(f"{root} is a file, not a folder; pass --out a new folder")
    if is_generated(root) or not any(root.iterdir()):
        return
    hint = (
        f"to benchmark these images use `adamcu bench --data {root}` (used as they are)"
        if (root / "classes.json").is_file()
        else "pass --out a new or empty folder"
    )
    raise UnsafeFolderError(
        f"{root} is not empty and was not written by the generator (no meta.json of "
        f"{GENERATOR!r}): refusing to overwrite it; {hint}"
    )


def claim_output_folder(root: Path, marker: str, tool: str, flag: str = "--out") -> None:
    """Make ``root`` the output folder of ``tool`` (which clears its own old outputs there),
    or refuse: a missing or empty folder gets the ``marker`` file and is the tool's from then
    on; one with the marker is the tool's already; any other folder is someone's. ``flag``:
    the option that names the folder, for the message."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UnsafeFolderError(f"{root} is a file, not a folder; pass {flag} a new folder")
    if root.is_dir() and any(root.iterdir()) and not (root / marker).is_file():
        raise UnsafeFolderError(
            f"{root} is not empty and was not written by `{tool}` (no {marker} in it): refusing "
            f"to replace the files it would leave there; pass {flag} a new or empty folder"
        )
    root.mkdir(parents=True, exist_ok=True)
    (root / marker).write_text(json.dumps({"written_by": tool}) + "\n")
