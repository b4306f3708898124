r"""The estimator tables of the README and the docs, from the registry.

The README's table (:func:`readme_table`) sits between :data:`BEGIN` and
:data:`END` (``scripts/estimator_table.py`` writes and checks it); the docs
build (``docs/conf.py``) writes the full reference page with
:func:`docs_page` every time, so it cannot drift.

Per estimator the metadata come from :func:`arsm_jax.estimators.info`
(``description, unbiased, pathwise, stateful, cost, reference, settings``).
Where an entry lacks a field, it is read from ``describe()``, the
:class:`~arsm_jax.estimators.Estimator` attributes, the keyword-only
parameters of its estimate function (settings and their defaults) and the
``Cost:`` and ``References:`` sections of that function's docstring or else
its module's ("?" and "–" when neither has them).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import sys
from typing import Any, Optional

from arsm_jax import estimators
from arsm_jax.reporting import formatting
from arsm_jax.reporting import records

README = os.path.join(records.REPO, "README.md")
BEGIN = "<!-- estimator-table:begin -->"
END = "<!-- estimator-table:end -->"

@dataclasses.dataclass
class Row:
  """One estimator's metadata, whichever source gave it."""
  name: str
  description: str
  unbiased: bool
  pathwise: bool
  stateful: bool
  cost: str
  reference: str
  settings: dict[str, Any]
  module: str
  function: str
  doc: str = ""


def _doc_section(doc: str, title: str) -> Optional[str]:
  """The text of a Google-style ``Title:`` section of ``doc``, on one line."""
  lines = inspect.cleandoc(doc or "").splitlines()
  for i, line in enumerate(lines):
    m = re.match(rf"^(\s*){title}:\s*(.*)$", line)
    if not m:
      continue
    indent, parts = len(m.group(1)), [m.group(2).strip()]
    inline = bool(parts[0])  # "Cost: text..." runs to the paragraph's end.
    for nxt in lines[i + 1:]:
      if not nxt.strip():
        if any(parts):
          break
        continue
      if re.match(r"^\s*[A-Z][A-Za-z ]*:\s*$", nxt):  # The next section.
        break
      if not inline and len(nxt) - len(nxt.lstrip()) <= indent:
        break
      parts.append(nxt.strip())
    text = " ".join(p for p in parts if p)
    return text or None
  return None


def _plain(text: Optional[str]) -> Optional[str]:
  """reST markup to Markdown: roles (:math:`x`) to their text, ``x`` to `x`."""
  if not text:
    return text
  text = re.sub(r":[\w:]+:`([^`]*)`", r"\1", text)
  for tex, plain in (("\\cdot", "·"), ("\\times", "×"), ("\\infty", "∞")):
    text = text.replace(tex, plain)
  text = re.sub(r"\\([A-Za-z]+)", r"\1", text)  # \min -> min
  return text.replace("``", "`")


def _settings_of(fn) -> dict[str, Any]:
  params = inspect.signature(fn).parameters
  return {n: p.default for n, p in params.items()
          if p.kind is p.KEYWORD_ONLY and n != "state"}


def rows() -> list[Row]:
  """The metadata of every registered estimator, in ``names()`` order."""
  info = estimators.info()
  described = estimators.describe()
  # A module's docstring speaks for an estimator only if the module
  # registers no other.
  per_module: dict[str, int] = {}
  for name in estimators.names():
    module = getattr(estimators.get(name).estimate_fn, "__module__", "")
    per_module[module] = per_module.get(module, 0) + 1
  out = []
  for name in estimators.names():
    est = estimators.get(name)
    fn = est.estimate_fn
    meta = info.get(name)
    field = lambda k, default, meta=meta: (
        getattr(meta, k, None) if getattr(meta, k, None) is not None
        else default)
    doc = getattr(fn, "__doc__", None) or ""
    module = getattr(fn, "__module__", "")
    module_doc = (getattr(sys.modules.get(module), "__doc__", None) or ""
                  if per_module.get(module) == 1 else "")
    section = lambda title: _plain(_doc_section(doc, title)
                                   or _doc_section(module_doc, title))
    cost = field("cost", section("Cost") or "?")
    ref = field("reference", section("References") or "–")
    settings = field("settings", None)
    settings = dict(settings) if settings is not None else _settings_of(fn)
    out.append(Row(
        name=name, description=field("description", described[name]),
        unbiased=bool(field("unbiased", est.unbiased)),
        pathwise=bool(field("pathwise", est.pathwise)),
        stateful=bool(field("stateful", est.stateful)),
        cost=str(cost), reference=str(ref), settings=settings,
        module=getattr(fn, "__module__", None) or "",
        # A functools.partial or other callable without a qualified name is
        # documented by its docstring text (see _docstring_block).
        function=getattr(fn, "__qualname__", None) or "<locals>",
        doc=getattr(fn, "__doc__", None) or ""))
  return out


def _cell(text: str) -> str:
  return str(text).replace("|", "\\|").replace("\n", " ")


def short_reference(reference: str) -> str:
  """'Authors year' for each ';'-separated citation (the README is short).

  ``"Kool, van Hoof and Welling. Buy 4 REINFORCE samples... ICLR 2019."``
  becomes ``"Kool, van Hoof and Welling 2019"``; a citation without a full
  stop after its authors (``"Liu et al. 2023"``) is kept as it is.
  """
  parts = []
  # Citations are separated by ';' or follow one another, each ending in
  # its year and a full stop.
  citations = re.split(r";|(?<=\b(?:19|20)\d\d\.)\s+(?=[A-Z])",
                       str(reference))
  for part in citations:
    part = part.strip().rstrip(".")
    # The authors end at the first full stop that is not "et al." or an
    # initial ("J. Smith").
    authors = re.split(r"(?<!\bal)(?<!\b[A-Z])\. ", part, maxsplit=1)
    et_al = re.match(r"^(.*?\bet al\.)\s+\S", part)
    if et_al and not re.fullmatch(r".*?\bet al\.\s+(?:19|20)\d\d", part):
      authors = [et_al.group(1), ""]
    if len(authors) == 2:
      years = re.findall(r"(?<![\d.])(?:19|20)\d\d(?![\d.]?\d)", part)
      names = re.split(r",\s*|\s+and\s+", authors[0])
      who = f"{names[0]} et al." if len(names) > 3 else authors[0]
      part = who + (f" {years[-1]}" if years else "")
    if part:
      parts.append(part)
  if len(parts) > 2:
    parts = parts[:2] + ["…"]
  return "; ".join(parts) or "–"


def short_cost(cost: str) -> str:
  """The main case of a cost: its first sentence or ';'-separated clause."""
  return re.split(r";|(?<=\.)\s", str(cost), maxsplit=1)[0].strip().rstrip(
      ".")


def readme_table(table_rows: list[Row]) -> str:
  """The README's table: name, unbiased, f evaluations per draw, reference.

  Costs and references are shortened (:func:`short_cost`,
  :func:`short_reference`); the docs' page has them in full.
  """
  lines = ["| estimator | unbiased | f evaluations per draw | reference |",
           "| --- | --- | --- | --- |"]
  for r in table_rows:
    lines.append(f"| `{r.name}` | {'yes' if r.unbiased else 'no'} | "
                 f"{_cell(short_cost(r.cost))} | "
                 f"{_cell(short_reference(r.reference))} |")
  return "\n".join(lines) + "\n"


def _settings_text(settings: dict[str, Any]) -> str:
  if not settings:
    return "none"
  return ", ".join(f"`{k}` (required)" if v is inspect.Parameter.empty
                   else f"`{k}={v!r}`" for k, v in settings.items())


def _docstring_block(r: Row) -> str:
  """The estimate function's docstring: autodoc where it can import it."""
  if "<locals>" not in r.function:
    return (f"```{{eval-rst}}\n.. autofunction:: {r.module}.{r.function}\n"
            f"   :no-index:\n```")
  # A function built by a factory (the *_multi estimators): its docstring
  # as text, since autodoc cannot import it by name.
  return inspect.cleandoc(r.doc) if r.doc else ""


def docs_page(table_rows: list[Row]) -> str:
  """The docs' estimator reference: the table and one section per estimator."""
  out = [
      "# Registered estimators",
      "",
      "Generated from the registry (`arsm_jax.estimators`) when the docs are "
      "built. `estimators.get(name, **settings)` binds the settings; each "
      "estimator follows the [contract](contract.md).",
      "",
      "| estimator | unbiased | pathwise | stateful | f evaluations per draw "
      "| settings (defaults) | reference |",
      "| --- | --- | --- | --- | --- | --- | --- |",
  ]
  yes = lambda b: "yes" if b else "no"
  for r in table_rows:
    out.append(
        f"| [`{r.name}`](#estimator-{r.name.replace('_', '-')}) | "
        f"{yes(r.unbiased)} | {yes(r.pathwise)} | {yes(r.stateful)} | "
        f"{_cell(r.cost)} | {_cell(_settings_text(r.settings))} | "
        f"{_cell(short_reference(r.reference))} |")
  out.append("")
  out += ["```{eval-rst}",
          ".. autofunction:: arsm_jax.estimators.info",
          "   :no-index:",
          "```", ""]
  for r in table_rows:
    out += [
        f"(estimator-{r.name.replace('_', '-')})=",
        f"## `{r.name}`",
        "",
        r.description,
        "",
        f"* unbiased: {yes(r.unbiased)}; pathwise (needs f differentiable in "
        f"z): {yes(r.pathwise)}; stateful: {yes(r.stateful)}",
        f"* f evaluations per draw: {r.cost}",
        f"* settings: {_settings_text(r.settings)}",
        f"* reference: {r.reference}",
        "",
        _docstring_block(r),
        "",
    ]
  return "\n".join(out)


def updated_readme(text: str, table: str) -> str:
  """``text`` with the block between the markers replaced by ``table``.

  Raises:
    ValueError: when a marker is missing.
  """
  return formatting.splice(text, table, BEGIN, END, "README.md")
