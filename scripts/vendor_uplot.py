"""Vendor uPlot into the status page: upstream's `dist/uPlot.esm.js` plus one small patch.

The patch makes uPlot's two module-level Intl objects lazy. Upstream builds an
`Intl.NumberFormat` and an `Intl.DateTimeFormat` as it is imported; the first Intl object of a
browser tab loads ICU's locale data, 30-120 ms of main-thread time on the first chart (see
docs/benchmarks.md § Status page). The page formats every number and time itself, so with the
patch uPlot never creates either. Behaviour is otherwise upstream's: `fmtNum` and `tzDate`
create the same objects on first use.

`make vendor-uplot [UPLOT_VERSION=x.y.z]` fetches the package with npm (which verifies the
tarball) and runs

    python3 scripts/vendor_uplot.py package/dist/uPlot.esm.js --version x.y.z

which checks the file against the pinned version and digest below, applies PATCH (each piece
must match exactly once) and writes `vendor/uPlot.esm.js` and `vendor/VERSION`; then make copies
the package's CSS and licence. Another version is refused with its digest, before anything is
written: an upgrade pins it here, in a reviewed change, and re-fits PATCH.
tests/test_page.py checks that the vendored file is the pinned upstream plus PATCH.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "infrawatch" / "web" / "static" / "vendor"
UPSTREAM_VERSION = "1.6.32"
UPSTREAM_SHA256 = "5dd9b3281aa64b461b42d9945f6adb2649d346502b12281a9ae0d46599a80eba"

# (upstream text, vendored text) pairs; each upstream text occurs exactly once.
PATCH: tuple[tuple[str, str], ...] = (
    (
        "const numFormatter = new Intl.NumberFormat(domEnv ? nav.language : 'en-US');\n"
        "const fmtNum = val => numFormatter.format(val);\n",
        "// infrawatch: created on first use, not at import (scripts/vendor_uplot.py).\n"
        "let numFormatter = null;\n"
        "const fmtNum = val => (numFormatter ??= new Intl.NumberFormat(domEnv ? nav.language"
        " : 'en-US')).format(val);\n",
    ),
    (
        "const localTz = new Intl.DateTimeFormat().resolvedOptions().timeZone;\n",
        "// infrawatch: resolved on first use, not at import (scripts/vendor_uplot.py).\n"
        "let localTz = null;\n",
    ),
    (
        "\telse if (tz == localTz)\n",
        "\telse if (tz == (localTz ??= new Intl.DateTimeFormat().resolvedOptions().timeZone))\n",
    ),
)


def apply(upstream: str) -> str:
    """Upstream's uPlot.esm.js text → the vendored text; ValueError if a piece doesn't fit."""
    return _replace(upstream, [(old, new) for old, new in PATCH])


def revert(vendored: str) -> str:
    """The vendored text → upstream's, so its digest can be checked against UPSTREAM_SHA256."""
    return _replace(vendored, [(new, old) for old, new in reversed(PATCH)])


def sha256(text: str) -> str:
    """Hex SHA-256 of `text` encoded as UTF-8."""
    return hashlib.sha256(text.encode()).hexdigest()


def _replace(text: str, pieces: list[tuple[str, str]]) -> str:
    for old, new in pieces:
        found = text.count(old)
        if found != 1:
            raise ValueError(f"patch piece found {found} times, expected once: {old[:60]!r}")
        text = text.replace(old, new)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", type=Path, help="upstream dist/uPlot.esm.js (npm pack)")
    parser.add_argument("--version", default=UPSTREAM_VERSION, help="its uPlot version")
    args = parser.parse_args()
    text = args.upstream.read_text(encoding="utf-8")
    digest = sha256(text)
    if (args.version, digest) != (UPSTREAM_VERSION, UPSTREAM_SHA256):
        print(
            f"{args.upstream}: uPlot {args.version}, sha256 {digest}; pinned: {UPSTREAM_VERSION}, "
            f"{UPSTREAM_SHA256}. To upgrade, pin the new pair in {Path(__file__).name} and "
            "re-fit PATCH.",
            file=sys.stderr,
        )
        return 1
    try:
        vendored = apply(text)
    except ValueError as exc:
        print(f"{args.upstream}: {exc}", file=sys.stderr)
        return 1
    (VENDOR / "uPlot.esm.js").write_text(vendored, encoding="utf-8")
    (VENDOR / "VERSION").write_text(f"{UPSTREAM_VERSION}\n", encoding="utf-8")
    print(f"vendored uPlot {UPSTREAM_VERSION} with {len(PATCH)} patch pieces into {VENDOR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
