"""Generate the settings table of docs/configuration.md from the models and the example file.

Every setting's default comes from the pydantic models and its description from the comment
above it in `infrawatch/example.toml`, so the reference can't drift from either:

    .venv/bin/python scripts/config_reference.py          # rewrite the table
    .venv/bin/python scripts/config_reference.py --check  # exit 1 if it is stale (the tests do)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from infrawatch.config import Settings, masked_value

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"
EXAMPLE = ROOT / "infrawatch" / "example.toml"
START, END = "<!-- reference:start -->", "<!-- reference:end -->"

_HEADER = re.compile(r"^#?\s*\[\[?([\w.]+)\]\]?\s*$")
_ASSIGN = re.compile(r"^#?\s*([A-Za-z_][\w-]*)\s*=\s*\S")


def example_comments(text: str) -> dict[str, str]:
    """`table.key` → the comment that documents that key in the example file.

    In order of preference: the comment paragraph right above the key; the key line's own
    trailing `# comment`; for "# key = value: explanation" (a key the example leaves unset) the
    explanation and the comment lines that continue it. Keys listed right under one paragraph
    share it (`rollup_1m_retention`, `rollup_1h_retention`).
    """
    comments: dict[str, str] = {}
    weak: dict[str, tuple[int, str]] = {}
    pending: list[str] = []  # the comment paragraph above the next key
    table, shareable, continuing = "", "", ""
    for raw in text.splitlines():
        line = raw.strip()
        header = _HEADER.match(line)
        if header:
            table, pending, shareable, continuing = header.group(1), [], "", ""
            continue
        assign = _ASSIGN.match(line)
        if assign:
            key = f"{table}.{assign.group(1)}" if table else assign.group(1)
            rest = line.lstrip("#").partition("=")[2]
            value, _, trailing = rest.partition(" #")
            inline = value.partition(": ")[2].strip() if line.startswith("#") else ""
            paragraph = " ".join(pending)
            meaning = paragraph or trailing.strip() or inline or shareable
            comments.setdefault(key, meaning)
            if line.startswith("#") and table:
                # A commented-out key may belong to an enclosing table: after the commented
                # "# [[alerting.routes]]" example comes "# silences = []" of [alerting]. Such a
                # guess is weak: a paragraph beats a trailing remark, and a real key beats both.
                parts = table.split(".")
                rank = 2 if paragraph else 1
                for depth in range(len(parts) - 1, 0, -1):
                    outer = ".".join([*parts[:depth], assign.group(1)])
                    if meaning and weak.get(outer, (0, ""))[0] < rank:
                        weak[outer] = (rank, meaning)
            shareable = paragraph or (shareable if not (trailing or inline) else "")
            pending, continuing = [], key if inline and not paragraph else ""
            continue
        body = line.lstrip("#").strip()
        if not body:  # a blank line or a bare "#" ends a comment paragraph
            pending, shareable, continuing = [], "", ""
        elif continuing:
            comments[continuing] += " " + body
        else:
            pending.append(body)
            shareable = ""
    for key, (_, meaning) in weak.items():
        if not comments.get(key):
            comments[key] = meaning
    return comments


def _item_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a `list[Model]` field, if it is one."""
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item
    return None


def settings_rows(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, default as TOML-ish JSON) for every setting; list items as `key[].field`."""
    for name, field in type(model).model_fields.items():
        key = f"{prefix}{field.alias or name}"
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from settings_rows(value, f"{key}.")
            continue
        if isinstance(value, Path) and field.default_factory is not None:
            # Computed per machine (state dir); the meaning column says where.
            yield key, f"<state dir>/{value.name}"
            continue
        yield key, json.dumps(masked_value(value), ensure_ascii=False, default=str)
        item = _item_model(field.annotation)
        if item is not None:
            for sub, sub_field in item.model_fields.items():
                default = (
                    "(required)"
                    if sub_field.is_required()
                    else json.dumps(
                        masked_value(sub_field.get_default(call_default_factory=True)),
                        ensure_ascii=False,
                        default=str,
                    )
                )
                yield f"{key}[].{sub_field.alias or sub}", default


def render_table() -> str:
    """The markdown table of every setting (defaults only: INFRAWATCH_* variables are ignored)."""
    for name in [n for n in os.environ if n.upper().startswith("INFRAWATCH_")]:
        del os.environ[name]
    comments = example_comments(EXAMPLE.read_text(encoding="utf-8"))
    lines = ["| setting | default | meaning (from the example file) |", "|---|---|---|"]
    for key, default in settings_rows(Settings()):
        lookup = key.replace("[]", "")
        meaning = comments.get(lookup, "")
        if len(default) > 60:
            default = default[:57] + "…"
        cell, text = default.replace("|", "\\|"), meaning.replace("|", "\\|")
        lines.append(f"| `{key}` | `{cell}` | {text} |")
    return "\n".join(lines)


def main() -> int:
    """Rewrite (or --check) the generated part of docs/configuration.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is stale")
    args = parser.parse_args()
    doc = DOC.read_text(encoding="utf-8")
    head, _, rest = doc.partition(START)
    _, _, tail = rest.partition(END)
    fresh = f"{head}{START}\n{render_table()}\n{END}{tail}"
    if args.check:
        if fresh != doc:
            print(f"{DOC} is stale: run scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
