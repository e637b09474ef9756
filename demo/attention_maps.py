"""Drawing attention for the Inside tab: one head's map as an SVG heatmap with the tokens on both sides, and every head
of a layer as a small picture to pick from.

A row is the token that looks; its cells are the tokens it looks at, darker where it looks more (the weight itself,
0 to 1, is the cell's opacity, so maps of different heads compare). GPT-2's cells right of the diagonal are the future
it cannot see: drawn in a flat grey, they make its triangle plain next to BERT's full square.
"""

from __future__ import annotations

import html

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image

from demo.i18n import number

CELL = 26  # an SVG cell, in the drawing's units (the SVG scales to its column's width)
CHAR = 8.5  # the width of one label character at FONT
FONT = 15
INK = (29, 78, 216)  # blue 700: attention
UNSEEN = "#e5e7eb"  # grey 200: what a causal model cannot see
THUMB = 112  # pixels of a head's picture


def label(token: str) -> str:
    """A token as a map labels it: without its leading space (BPE's marker of a word start), never blank."""
    return token.strip() or {"\n": "\u23ce", "": "\u2026"}.get(token[:1], "\u2423")


def heatmap_svg(tokens: list[str], weights: ArrayLike, *, causal: bool, selected: int | None, title: str) -> str:
    """One head's map (T, T) as an SVG: rows are the tokens that look (left labels), columns the tokens looked at (top
    labels); `selected` outlines one row. Each cell says its weight on hover."""
    weights = np.asarray(weights, dtype=np.float32)
    T = len(tokens)
    names = [html.escape(label(t)) for t in tokens]
    left = 12 + CHAR * max(len(n) for n in names)
    top = 12 + CHAR * 0.75 * max(len(n) for n in names)  # column labels are turned 45 degrees
    width, height = left + CELL * T + 6, top + CELL * T + 6
    parts = [f'<svg viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{html.escape(title)}" '  # i18n: not shown (SVG)
             f'xmlns="http://www.w3.org/2000/svg" class="attention-map" font-size="{FONT}">',
             f"<title>{html.escape(title)}</title>"]
    for j, name in enumerate(names):
        x = left + CELL * j + CELL / 2
        parts.append(f'<text x="{x:.1f}" y="{top - 6:.1f}" transform="rotate(-45 {x:.1f} {top - 6:.1f})">{name}</text>')
    for i, name in enumerate(names):
        y = top + CELL * i
        weight = "700" if i == selected else "400"
        parts.append(f'<text x="{left - 6:.1f}" y="{y + CELL * 0.7:.1f}" text-anchor="end" '
                     f'font-weight="{weight}">{name}</text>')
        for j in range(T):
            x = left + CELL * j
            if causal and j > i:
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{CELL}" height="{CELL}" fill="{UNSEEN}"/>')
                continue
            w = float(weights[i, j])
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{CELL}" height="{CELL}" fill="rgb{INK}" '
                         f'fill-opacity="{w:.3f}" stroke="#cbd5e1" stroke-width="0.5">'
                         f"<title>{names[i]} \u2192 {names[j]}: {number(w, '.0%')}</title></rect>")
    if selected is not None:
        parts.append(f'<rect x="{left - 2:.1f}" y="{top + CELL * selected:.1f}" width="{CELL * T + 4}" '
                     f'height="{CELL}" fill="none" stroke="#c2410c" stroke-width="3"/>')
    parts.append("</svg>")
    return "".join(parts)


def head_pictures(weights: ArrayLike, *, causal: bool) -> list[Image.Image]:
    """Every head of one layer (n_head, T, T) as a small picture: white to blue with the weight, the unseen grey."""
    weights = np.asarray(weights, dtype=np.float32)
    T = weights.shape[-1]
    unseen = np.triu(np.ones((T, T), dtype=bool), 1) if causal else np.zeros((T, T), dtype=bool)
    pictures = []
    for head in weights:
        w = np.clip(head, 0, 1)[..., None]  # (T, T, 1)
        rgb = (255 * (1 - w) + np.array(INK) * w).round().astype(np.uint8)  # white blended into blue
        rgb[unseen] = (229, 231, 235)
        pictures.append(Image.fromarray(rgb, "RGB").resize((THUMB, THUMB), Image.Resampling.NEAREST))
    return pictures


CSS = """
.attention-map { width: 100%; max-height: 70vh; }
.attention-map text { fill: #111827; font-family: var(--font); }
/* The heads' pictures: a caption wraps to a second line, whole, where one line would cut it ("cabeza 1 (mostrada)"
   on a phone), and is no wider than its picture */
.head-pictures .caption-label { white-space: normal; text-overflow: clip; overflow-wrap: break-word;
  max-width: calc(100% - 2 * var(--block-label-margin)); line-height: 1.2; }
/* The Layer and Head sliders side by side: each number box stays beside its name (a narrower box), so that neither
   wraps under its name and the two bars sit level */
.head-knob .head { flex-wrap: nowrap; align-items: center; gap: 6px; }
.head-knob .head > label { min-width: 0; }
.head-knob .head .tab-like-container { margin-bottom: 0 !important; }
.head-knob .head input[type=number] { min-width: 0; width: 3.2em; }
"""
