"""The self-contained HTML report: the overlap table and galleries of matches.

Rendered with jinja2 and autoescaping on: captions and URLs are untrusted web text, so a
``<script>`` in an alt-text shows as text. Images are embedded as data URIs (no file or
network access when the page is opened).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import jinja2
from PIL import Image

THUMB = 128
TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>Eval-set overlap — {{ method }}</title>
<style>
body { font-family: sans-serif; margin: 2em; } table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
td.text { text-align: left; max-width: 28em; overflow-wrap: anywhere; }
img.plot { width: auto; height: auto; max-width: 100%; }
img { width: {{ thumb }}px; height: {{ thumb }}px; object-fit: contain; background: #eee; }
</style></head><body>
<h1>Eval-set overlap</h1>
<p>Method: <code>{{ method }}</code>, threshold {{ threshold }}{% if semantic %}
(semantic neighbours, not proof of copying){% endif %}{% for name, t in thresholds.items() %};
{{ name }}: {{ t }}{% endfor %}. Checkpoint: {{ checkpoint or "none" }}.</p>
<table id="overlap"><tr>{% for h in headers %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}
</table>
{% for gallery in galleries %}
<h2>{{ gallery.title }}</h2>
<table class="gallery"><tr><th>eval image</th><th>pool image</th><th>score</th>
<th>eval id</th><th>pool caption</th><th>url</th></tr>
{% for m in gallery.matches %}<tr class="{{ m.side|default('match') }}">
<td><img alt="eval" src="{{ m.eval_img }}"></td>
<td><img alt="pool" src="{{ m.pool_img }}"></td><td>{{ "%.3f"|format(m.score) }}
{% if m.side is defined %}<br>{{ m.side }}{% endif %}</td>
<td class="text">{{ m.eval_set }} {{ m.eval_id }}</td><td class="text">{{ m.caption }}</td>
<td class="text">{{ m.url }}</td></tr>
{% endfor %}</table>{% endfor %}
{% if calibration %}<h2>Calibration</h2>
<img class="plot" alt="calibration" src="{{ calibration }}">{% endif %}
</body></html>
"""


def data_uri(image: Image.Image | None, size: int | None = THUMB) -> str:
    """A PNG thumbnail (`size` px at most; None: full size) as a data: URI ('' for no
    image)."""
    if image is None:
        return ""
    thumb = image.convert("RGB")
    if size is not None:
        thumb.thumbnail((size, size))
    out = io.BytesIO()
    thumb.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def render(context: dict[str, Any]) -> str:
    """The report page for `context` (see `TEMPLATE`)."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE).render(thumb=THUMB, **context)


def cell(value: Any) -> str:
    """A table cell: floats to 4 significant digits, None as a dash."""
    return f"{value:.4g}" if isinstance(value, float) else "—" if value is None else str(value)


def page(method: Any, rows: list[dict[str, Any]], checkpoint: Any, galleries: list[dict],
         calibration: str) -> str:
    """The report page: `method` (`methods.Method`), table rows (dicts of one set
    each), the galleries and the calibration plot's data URI ('' without one)."""
    return render({"method": method.name, "threshold": method.threshold,
                   "thresholds": method.thresholds, "semantic": method.semantic,
                   "checkpoint": checkpoint, "headers": list(rows[0]) if rows else [],
                   "rows": [[cell(v) for v in r.values()] for r in rows],
                   "galleries": galleries, "calibration": calibration})
