"""clm_lib/plugins.py: the one registry idiom of every plugin family, with built-ins imported on first use."""

from __future__ import annotations

import sys
import textwrap

import pytest

from clm_lib.errors import ClmError, ConfigError
from clm_lib.plugins import Registry


@pytest.fixture
def family(tmp_path, monkeypatch):
    """A plugin family in its own importable modules: ``fam`` holds the registry, ``fam_a``/``fam_b`` the built-ins
    (registering at the bottom of their module, as the real ones do)."""
    (tmp_path / "fam.py").write_text(textwrap.dedent('''
        from clm_lib.plugins import Registry

        class Base:
            name = ""

        REG = Registry("widget", Base, {"b": "fam_b", "a": "fam_a"}, field="widgets.kind")
    '''))
    for letter in "ab":
        (tmp_path / f"fam_{letter}.py").write_text(textwrap.dedent(f'''
            from fam import REG, Base

            class W{letter.upper()}(Base):
                pass

            REG.register("{letter}", W{letter.upper()})
        '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield __import__("fam")
    for mod in ("fam", "fam_a", "fam_b"):
        sys.modules.pop(mod, None)


def test_names_list_builtins_without_importing_them(family):
    assert family.REG.names() == ["a", "b"]
    assert "a" in family.REG and "c" not in family.REG
    assert "fam_a" not in sys.modules and "fam_b" not in sys.modules


def test_get_imports_only_the_builtin_asked_for(family):
    cls = family.REG.get("a")
    assert cls.__name__ == "WA" and cls.name == "a"
    assert "fam_a" in sys.modules and "fam_b" not in sys.modules


def test_an_unknown_name_names_the_field_and_the_known_ones(family):
    family.REG.register("z", type("Z", (family.Base,), {}))
    with pytest.raises(ConfigError, match=r"^widgets\.kind: unknown widget 'nope'; known: a, b, z$") as err:
        family.REG.get("nope")
    assert isinstance(err.value, ClmError)


def test_classes_are_builtins_in_declared_order_then_plugins_in_registration_order(family):
    late, early = type("Late", (family.Base,), {}), type("Early", (family.Base,), {})
    family.REG.register("late", late)
    family.REG.register("early", early)
    assert list(family.REG.classes()) == ["b", "a", "late", "early"]


def test_a_plugin_can_take_no_builtin_name_and_no_foreign_class(family):
    with pytest.raises(ValueError, match="a widget named 'a' is already registered"):
        family.REG.register("a", type("Impostor", (family.Base,), {}))
    with pytest.raises(TypeError, match="not a Base subclass"):
        family.REG.register("x", dict)
    with pytest.raises(TypeError, match="not a Base subclass"):
        family.REG.register("x", "not a class")  # type: ignore[arg-type]
    assert family.REG.names() == ["a", "b"]


def test_registering_the_same_class_twice_is_harmless_and_unregister_forgets(family):
    cls = type("Again", (family.Base,), {})
    family.REG.register("again", cls)
    family.REG.register("again", cls)
    assert family.REG.get("again") is cls
    family.REG.unregister("again")
    assert "again" not in family.REG


def test_a_registry_without_field_or_builtins():
    reg: Registry[object] = Registry("thing", object)
    assert reg.names() == [] and reg.classes() == {}
    with pytest.raises(ConfigError, match=r"^unknown thing 'x'; known: none$"):
        reg.get("x")
