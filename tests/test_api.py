"""The public API: exported names, the model contract, and module boundaries."""
import ast
import importlib
import pathlib
import typing

import hrnn_jax
from hrnn_jax import cells, models, training
from hrnn_jax.config import ModelConfig
from hrnn_jax.evaluation import predict

PACKAGE = pathlib.Path(hrnn_jax.__file__).parent


def module_name(path: pathlib.Path) -> str:
    """The dotted name of a file of the package (a package's ``__init__`` is the package)."""
    parts = ("hrnn_jax",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = sorted(PACKAGE.rglob("*.py"))
# every module and subpackage of the library, by dotted name
MODULES = {module_name(p) for p in FILES}
PACKAGES = {module_name(p) for p in FILES if p.name == "__init__.py"}


def children(package: str) -> set[str]:
    """The names of the modules and subpackages directly inside ``package``."""
    return {m.rpartition(".")[2] for m in MODULES if m.rpartition(".")[0] == package}


def test_all_names_exist_and_are_documented():
    assert len(hrnn_jax.__all__) == len(set(hrnn_jax.__all__))
    for name in hrnn_jax.__all__:
        obj = getattr(hrnn_jax, name)
        assert obj.__doc__, name
    # an exported function never hides a module of the same name (in any package)
    assert "hrnn_jax" in PACKAGES and {"data", "models", "training"} <= children("hrnn_jax")
    for package in PACKAGES:
        exported = set(getattr(importlib.import_module(package), "__all__", ()))
        assert not exported & children(package), package


def test_every_model_keeps_the_contract():
    names = models.model_names()
    assert {"gru", "concat", "hrnn-init", "hrnn-all", "hrnn-meta", "narm", "stamp"} <= set(names)
    for name in names:
        model = models.build_model(name, 10, ModelConfig(hidden=4), n_users=3)
        assert isinstance(model, models.Model), name
    assert isinstance(models.HRNN(10, cells.GRU(4), user_cell=cells.GRU(4)), models.Model)
    assert not isinstance(object(), models.Model)


def test_training_and_predict_are_typed_with_the_contract():
    for fn in (training.init_state, training.make_train_step, training.fit,
               predict.states_at, predict.final_states, predict.model_ranks,
               predict.evaluate_model, predict.recommend):
        assert typing.get_type_hints(fn)["model"] is models.Model, fn.__name__


def test_no_module_imports_another_modules_private_names():
    """``from hrnn_jax.x import _y`` and ``x._y`` (x a module of the package, at any depth) are
    not used."""
    offences = []
    for path in FILES:
        here = module_name(path)
        # the package a relative import starts from
        base = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    up = base.split(".")[:len(base.split(".")) - (node.level - 1)]
                    source = ".".join(up + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                inside = source == "hrnn_jax" or source.startswith("hrnn_jax.")
                for a in node.names:
                    if inside and a.name.startswith("_") and source != here:
                        offences.append(f"{here}: from {source} import {a.name}")
                    if f"{source}.{a.name}" in MODULES:
                        aliases[a.asname or a.name] = f"{source}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in MODULES and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                offences.append(f"{here}: {node.value.id}.{node.attr}")
    assert len(FILES) > 40  # the subpackages' modules are read too
    assert not offences, offences
