"""Draw the integration's brand icons (custom_components/iotmp/brand/).

icon.png is 256x256 and icon@2x.png 512x512.

A rounded square in a teal-to-blue gradient with a white mark: a hub node sending
two waves up, linked to two device nodes below (devices -> server -> Home Assistant).
Transparent outside the rounded square, no padding (the brands spec wants trimmed
images). Home Assistant falls back to the icon for the logo, so no logo is drawn.

Run with any Python that has Pillow (the project's venvs do):

    ~/.cache/iotmp-ha/venv-min/bin/python scripts/draw_brand.py
"""

from __future__ import annotations

import sys
from math import cos, radians, sin
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
BRAND = ROOT / "custom_components" / "iotmp" / "brand"
SUPERSAMPLE = 4
TOP_LEFT = (0x12, 0xB5, 0xA6)  # teal
BOTTOM_RIGHT = (0x1E, 0x5A, 0xC8)  # blue
WHITE = (255, 255, 255, 255)


def _gradient(size: int) -> Image.Image:
    """Diagonal gradient from TOP_LEFT to BOTTOM_RIGHT."""
    ramp = Image.linear_gradient("L").resize((size, size))  # 0 at the top, 255 at the bottom
    diagonal = ImageChops.add(ramp, ramp.rotate(90), scale=2)  # top-left 0 .. bottom-right 255
    start = Image.new("RGB", (size, size), TOP_LEFT)
    end = Image.new("RGB", (size, size), BOTTOM_RIGHT)
    return Image.composite(end, start, diagonal)


def draw_icon(size: int) -> Image.Image:
    """Draw the icon at size x size pixels."""
    s = size * SUPERSAMPLE
    mask = Image.new("L", (s, s), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, s - 1, s - 1), radius=round(s * 0.22), fill=255)
    icon = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    icon.paste(_gradient(s), (0, 0), mask)

    draw = ImageDraw.Draw(icon)
    line = round(s * 0.055)

    def u(value: float) -> int:
        return round(value * s)

    hub = (0.5, 0.565)
    waves = (0.19, 0.32)  # radii of the stroke centre lines
    half = line / 2 / s
    # Two waves above the hub: arcs centred on it (PIL strokes inside the box, so
    # the box is widened by half a stroke to centre the stroke on the radius).
    for radius in waves:
        r = radius + half
        box = (u(hub[0] - r), u(hub[1] - r), u(hub[0] + r), u(hub[1] + r))
        draw.arc(box, start=225, end=315, fill=WHITE, width=line)
        for angle in (225, 315):  # round caps
            x = (hub[0] + radius * cos(radians(angle))) * s
            y = (hub[1] + radius * sin(radians(angle))) * s
            draw.ellipse((x - line / 2, y - line / 2, x + line / 2, y + line / 2), fill=WHITE)
    # Links from the hub down to two device nodes, then the nodes on top.
    nodes = [(0.25, 0.765), (0.75, 0.765)]
    for node in nodes:
        draw.line((u(hub[0]), u(hub[1]), u(node[0]), u(node[1])), fill=WHITE, width=line)
    for (x, y), r in [(hub, 0.08), (nodes[0], 0.062), (nodes[1], 0.062)]:
        draw.ellipse((u(x - r), u(y - r), u(x + r), u(y + r)), fill=WHITE)
    return icon.resize((size, size), Image.Resampling.LANCZOS)


def main() -> int:
    """Write both sizes."""
    BRAND.mkdir(parents=True, exist_ok=True)
    for name, size in (("icon.png", 256), ("icon@2x.png", 512)):
        path = BRAND / name
        draw_icon(size).save(path, optimize=True)
        print(f"wrote {path.relative_to(ROOT)} ({size}x{size})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
