"""Plots as inline SVG, drawn here: a report must open offline from disk, so it cannot load a
plotting library from a CDN, and a few hundred lines of SVG are smaller than any bundled one.

Every label may come from a result file (model, method, metric, category names): each goes
through `html_escape` and onto one line; every other attribute is a number this module made.
Each value is drawn with its 95% CI as an error bar when the result file has one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.reports.escape import html_escape, one_line

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
MISSING = "—"


@dataclass
class Estimate:
    """A value with its 95% CI (either bound None: no interval) and n."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None and math.isfinite(self.value)

    def span(self) -> tuple[float, float]:
        lo = self.ci_low if _finite(self.ci_low) else self.value
        hi = self.ci_high if _finite(self.ci_high) else self.value
        return min(lo, self.value), max(hi, self.value)  # type: ignore[type-var]

    shown: str | None = None  # the label, when `value` is a transformed one (a log axis)

    def label(self) -> str:
        if self.shown is not None:
            return self.shown
        if not self.ok:
            return MISSING
        ci = f" [{_fmt(self.ci_low)}, {_fmt(self.ci_high)}]" if _finite(self.ci_low) and _finite(self.ci_high) else ""
        return f"{_fmt(self.value)}{ci}" + (f" (n={self.n})" if self.n else "")


@dataclass
class Point:
    """One marker of a scatter plot: a row (model / method) at (x, y)."""

    label: str
    x: Estimate
    y: Estimate
    marked: bool = False  # a reference row: drawn hollow


def _log(e: Estimate, floor: float) -> Estimate:
    """An estimate on a log10 axis; the labels keep the original numbers (`shown`)."""
    def f(v: float | None) -> float | None:
        return None if not _finite(v) else math.log10(max(v, floor))  # type: ignore[arg-type]

    out = Estimate(f(e.value), f(e.ci_low), f(e.ci_high), e.n)
    out.shown = e.label()
    return out


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _fmt(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return MISSING
    return f"{v:.3g}" if v != 0 and not 1e-3 <= abs(v) < 1e4 else f"{v:.3f}"


def _tick(v: float) -> str:
    return f"{v:.4g}"


def _text(s: object) -> str:
    return html_escape(one_line(s))


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart)."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def _bounds(values: list[tuple[float, float]], include_zero: bool) -> tuple[float, float]:
    lo = min((a for a, _ in values), default=0.0)
    hi = max((b for _, b in values), default=1.0)
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.04 * (hi - lo)  # markers and labels at the edge stay inside the frame
    lo, hi = (lo if include_zero and lo == 0 else lo - pad), (hi if include_zero and hi == 0 else hi + pad)
    ticks = _ticks(lo, hi)
    return ticks[0], ticks[-1]


def _legend(names: list[str], x: float, y: float, width: float) -> tuple[list[str], float]:
    """Legend swatches in rows that fit `width`; returns the elements and the height used."""
    out, cx, cy = [], x, y
    for i, name in enumerate(names):
        w = 22 + 7 * min(len(name), 40)
        if cx + w > x + width and cx > x:
            cx, cy = x, cy + 18
        out.append(f'<rect x="{cx:.1f}" y="{cy - 9:.1f}" width="12" height="12" fill="{PALETTE[i % len(PALETTE)]}"/>'
                   f'<text x="{cx + 16:.1f}" y="{cy + 1:.1f}">{_text(name[:40])}</text>')
        cx += w
    return out, cy - y + 18


def bar_chart(title: str, groups: list[str], series: list[str], data: dict[tuple[str, str], Estimate],
              y_label: str = "", width: int = 760) -> str:
    """Grouped bars: one group per `groups` entry (a category, a metric), one bar per `series`
    entry (a model / method) with its CI as an error bar; a missing value leaves a gap."""
    legend, legend_h = _legend(series, 60, 0, width - 70)
    longest = min(max((len(g) for g in groups), default=0), 34)
    top, height_plot, left, bottom = 34 + legend_h, 220, 60, 30 + int(3.2 * longest)
    height = top + height_plot + bottom
    spans = [e.span() for e in data.values() if e.ok]
    lo, hi = _bounds(spans, include_zero=True)

    def sy(v: float) -> float:
        return top + height_plot * (1 - (v - lo) / (hi - lo))

    plot_w = width - left - 20
    group_w = plot_w / max(len(groups), 1)
    bar_w = min(28.0, group_w * 0.8 / max(len(series), 1))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img">',
             f'<title>{_text(title)}</title>',
             f'<text class="title" x="{left}" y="18">{_text(title)}</text>',
             '<g transform="translate(0,30)">', *legend, '</g>']
    for t in _ticks(lo, hi):
        y = sy(t)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - 20}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_tick(t)}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{width - 20}" y1="{sy(0):.1f}" y2="{sy(0):.1f}"/>')
    if y_label:
        parts.append(f'<text class="tick" transform="translate(14,{top + height_plot / 2:.1f}) rotate(-90)" '
                     f'text-anchor="middle">{_text(y_label)}</text>')
    for gi, group in enumerate(groups):
        gx = left + gi * group_w + (group_w - bar_w * len(series)) / 2
        for si, name in enumerate(series):
            e = data.get((group, name))
            if e is None or not e.ok:
                continue
            x = gx + si * bar_w
            y0, y1 = sy(0), sy(e.value)  # type: ignore[arg-type]
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{min(y0, y1):.1f}" width="{bar_w * 0.9:.1f}" '
                         f'height="{max(abs(y1 - y0), 0.5):.1f}" fill="{PALETTE[si % len(PALETTE)]}">'
                         f'<title>{_text(f"{name} · {group}: {e.label()}")}</title></rect>')
            if _finite(e.ci_low) and _finite(e.ci_high):
                cx = x + bar_w * 0.45
                ya, yb = sy(e.ci_low), sy(e.ci_high)  # type: ignore[arg-type]
                parts.append(f'<path class="err" d="M{cx:.1f} {ya:.1f}V{yb:.1f}M{cx - 3:.1f} {ya:.1f}h6'
                             f'M{cx - 3:.1f} {yb:.1f}h6"/>')
        label = group if len(group) <= 34 else group[:33] + "…"
        parts.append(f'<text class="tick" text-anchor="end" transform="translate({left + (gi + 0.5) * group_w:.1f},'
                     f'{top + height_plot + 12}) rotate(-30)">{_text(label)}<title>{_text(group)}</title></text>')
    parts.append("</svg>")
    return "".join(parts)


def scatter(title: str, x_label: str, y_label: str, points: list[Point], width: int = 560,
            height: int = 400, log_x: bool = False) -> str:
    """A trade-off picture: one marker per row at (x, y), both CIs as error bars, labelled.

    `log_x`: x on a log10 axis (forget quality is a p-value: the interesting range spans
    decades); values at or below 0 sit at the axis' left end."""
    left, right, top, bottom = 64, 20, 34, 52
    colours = {id(p): PALETTE[i % len(PALETTE)] for i, p in enumerate(points)}  # a row keeps its colour
    good = [p for p in points if p.x.ok and p.y.ok]
    if log_x:
        floor = min((v for p in good for v in (p.x.value, p.x.ci_low) if _finite(v) and v > 0), default=1e-12)
        logged = [Point(p.label, _log(p.x, floor), p.y, p.marked) for p in good]
        colours.update({id(q): colours[id(p)] for p, q in zip(good, logged)})
        good = logged
    x_lo, x_hi = _bounds([p.x.span() for p in good], include_zero=False)
    if log_x:
        x_lo, x_hi = math.floor(x_lo), math.ceil(x_hi)
    y_lo, y_hi = _bounds([p.y.span() for p in good], include_zero=False)
    pw, ph = width - left - right, height - top - bottom

    def sx(v: float) -> float:
        return left + pw * (v - x_lo) / (x_hi - x_lo)

    def sy(v: float) -> float:
        return top + ph * (1 - (v - y_lo) / (y_hi - y_lo))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img">',
             f'<title>{_text(title)}</title>',
             f'<text class="title" x="{left}" y="18">{_text(title)}</text>']
    x_ticks = _ticks(x_lo, x_hi) if not log_x else [float(k) for k in range(int(x_lo), int(x_hi) + 1)]
    if log_x and len(x_ticks) > 8:
        x_ticks = x_ticks[::math.ceil(len(x_ticks) / 8)]
    for t in x_ticks:
        shown = _tick(t) if not log_x else f"1e{int(t)}"
        parts.append(f'<line class="grid" x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" y2="{top + ph}"/>'
                     f'<text class="tick" x="{sx(t):.1f}" y="{top + ph + 16}" text-anchor="middle">{shown}</text>')
    for t in _ticks(y_lo, y_hi):
        parts.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}"/>'
                     f'<text class="tick" x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{_tick(t)}</text>')
    parts.append(f'<rect class="frame" x="{left}" y="{top}" width="{pw}" height="{ph}"/>'
                 f'<text class="tick" x="{left + pw / 2:.1f}" y="{height - 10}" text-anchor="middle">{_text(x_label)}'
                 f'{" (log scale)" if log_x else ""}</text>'
                 f'<text class="tick" transform="translate(14,{top + ph / 2:.1f}) rotate(-90)" '
                 f'text-anchor="middle">{_text(y_label)}</text>')
    for p in good:
        colour = colours[id(p)]
        x, y = sx(p.x.value), sy(p.y.value)  # type: ignore[arg-type]
        if _finite(p.x.ci_low) and _finite(p.x.ci_high):
            parts.append(f'<path class="err" stroke="{colour}" d="M{sx(p.x.ci_low):.1f} {y:.1f}H{sx(p.x.ci_high):.1f}"/>')
        if _finite(p.y.ci_low) and _finite(p.y.ci_high):
            parts.append(f'<path class="err" stroke="{colour}" d="M{x:.1f} {sy(p.y.ci_low):.1f}V{sy(p.y.ci_high):.1f}"/>')
        fill = "#fff" if p.marked else colour
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{fill}" stroke="{colour}" stroke-width="2">'
                     f'<title>{_text(f"{p.label}: {x_label} {p.x.label()}; {y_label} {p.y.label()}")}</title></circle>'
                     f'<text class="point" x="{x + 7 if x < left + 0.7 * pw else x - 7:.1f}" y="{y - 7:.1f}" '
                     f'text-anchor="{"start" if x < left + 0.7 * pw else "end"}">{_text(p.label[:40])}</text>')
    parts.append("</svg>")
    return "".join(parts)
