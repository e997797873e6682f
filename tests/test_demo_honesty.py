"""The demo catalog proves the plumbing, not the method (DESIGN.md, "Honest evaluation").

The offline enrichment backend must not learn from the generator that wrote the demo titles:
it may not import the generator, and its glossary must read the demo's jargon only as far as a
general shop glossary would, leaving a real share of it unread.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pytest

import vlclip.enrich
from vlclip.catalog import synthetic
from vlclip.config import SyntheticSource
from vlclip.enrich import rule_based
from vlclip.enrich.rule_based import QUANTITY, Glossary

GENERATOR = "vlclip.catalog.synthetic"
DEMO_SEEDS = (7, 11)  # 7: the default demo (params.yaml); 11: another draw
MIN_UNREAD_SHARE = 0.2  # title words neither a glossary entry nor a plain word
MAX_GLOSSARY_SHARE_OF_SHORT_WORDS = 0.75  # a copy of the generator would read all of them
MAX_GLOSSARY_SHARE_OF_RULE_FORMS = 0.5  # ... and would list every form its rules can make


def _imported_modules(path: Path, package: str) -> set[str]:
    """Every module a source file imports, relative imports resolved, ``from a import b`` as
    both ``a`` and ``a.b`` (``b`` may be a module)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            modules.add(base)
            modules.update(f"{base}.{alias.name}" for alias in node.names)
    return modules


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_rule_based_backend_does_not_import_the_generator():
    path = Path(rule_based.__file__)
    modules = _imported_modules(path, "vlclip.enrich")
    assert not any(module.startswith(GENERATOR) for module in modules), modules
    assert not any(GENERATOR in text for text in _string_constants(path))  # importlib too


def test_no_enrichment_module_imports_the_generator():
    package = Path(vlclip.enrich.__file__).parent
    for path in sorted(package.rglob("*.py")):
        modules = _imported_modules(path, "vlclip.enrich")
        assert not any(module.startswith(GENERATOR) for module in modules), path


def _title_words(title: str) -> list[str]:
    """Words of a title as the rule-based reader sees them, amounts and units left out."""
    tokens = re.split(r"\s+|/", QUANTITY.sub(" ", title))
    keys = [token.lower().strip(".,;:-&") for token in tokens]
    return [key for key in keys if re.search(r"[a-z]", key)]


def _word_kinds(seed: int, glossary: Glossary) -> Counter[str]:
    """Title words of a demo catalog by who can read them: the glossary, anyone, no one."""
    source = SyntheticSource(seed=seed)
    kinds: Counter[str] = Counter()
    for title, _, _ in synthetic._plan(source)[1]:
        for word in _title_words(title):
            if word in glossary.words:
                kinds["glossary"] += 1
            elif word in synthetic.VOCABULARY:
                kinds["plain"] += 1
            else:
                kinds["unread"] += 1
    return kinds


@pytest.mark.parametrize("seed", DEMO_SEEDS)
def test_glossary_leaves_a_real_share_of_demo_jargon_unread(seed):
    kinds = _word_kinds(seed, Glossary.load())
    total = sum(kinds.values())
    assert kinds["unread"] >= MIN_UNREAD_SHARE * total, kinds
    short_words = kinds["glossary"] + kinds["unread"]
    assert kinds["glossary"] <= MAX_GLOSSARY_SHARE_OF_SHORT_WORDS * short_words, kinds
    assert kinds["glossary"] > 0  # a general glossary still reads common jargon


def test_glossary_is_not_a_list_of_the_generators_forms():
    glossary = Glossary.load()
    forms = {form for word in synthetic.VOCABULARY for form in synthetic.spellings(word)
             if form != word and form.isalpha()}
    listed = forms & set(glossary.words)
    assert len(listed) <= MAX_GLOSSARY_SHARE_OF_RULE_FORMS * len(forms), sorted(listed)
