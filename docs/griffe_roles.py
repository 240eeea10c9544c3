"""A griffe extension for the API pages: the Sphinx roles of the docstrings
(``:func:`name```, ``:class:`~a.B```, ...) become links to the objects the site
documents, and inline code for everything else (private helpers, other packages).

The docstrings keep their roles, which read well in ``help()``; only what
mkdocstrings renders changes.
"""

from __future__ import annotations

import re
from pathlib import Path

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|data|mod|obj|exc):`(~?)\.?([\w.]+)`")
DIRECTIVE = re.compile(r"^:::\s*([\w.]+)", re.M)
API_PAGES = Path(__file__).parent / "api"


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx cross-reference roles into autorefs links or inline code."""

    def on_package(self, *, pkg, loader, **kwargs) -> None:
        if pkg.name != "hkmeans":
            return
        rendered = self._rendered(loader.modules_collection)
        for obj in self._walk(pkg, set()):
            if obj.docstring is not None and ":`" in obj.docstring.value:
                obj.docstring.value = ROLE.sub(lambda m: self._replace(m, obj, loader, rendered), obj.docstring.value)

    @staticmethod
    def _lookup(collection, path):
        try:
            return collection[path]
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None

    def _rendered(self, collection) -> dict:
        """Canonical path -> path under which the API pages show it."""
        out = {}
        for page in API_PAGES.glob("*.md"):
            for root in DIRECTIVE.findall(page.read_text(encoding="utf-8")):
                obj = self._lookup(collection, root)
                if obj is None:
                    continue
                out[obj.canonical_path] = root
                for name, member in obj.members.items():
                    if name.startswith("_") or (member.is_alias and not obj.is_class):
                        continue  # private, or a name a module imports
                    try:
                        out.setdefault(member.canonical_path, f"{root}.{name}")
                    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                        continue
        return out

    def _walk(self, obj, seen):
        if obj.path in seen or obj.is_alias:
            return
        seen.add(obj.path)
        yield obj
        for member in obj.members.values():
            if not member.is_alias:
                yield from self._walk(member, seen)

    def _replace(self, match, obj, loader, rendered) -> str:
        tilde, target = match.groups()
        shown = target.rsplit(".", 1)[-1] if tilde else target
        scopes = [obj] + [p for p in self._parents(obj)]
        candidates = [target, f"hkmeans.{target}"] + [f"{scope.path}.{target}" for scope in scopes]
        for path in candidates:
            found = self._lookup(loader.modules_collection, path)
            if found is None:
                continue
            try:
                canonical = found.canonical_path
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue
            if canonical in rendered:
                return f"[`{shown}`][{rendered[canonical]}]"
        return f"`{shown}`"

    @staticmethod
    def _parents(obj):
        while obj.parent is not None:
            obj = obj.parent
            yield obj
