"""The public API: exported names, the model contract, and module boundaries."""
import ast
import pathlib
import typing

import hrnn_jax
from hrnn_jax import cells, compare, models, predict, training
from hrnn_jax.config import ModelConfig

PACKAGE = pathlib.Path(hrnn_jax.__file__).parent
MODULES = {p.stem for p in PACKAGE.glob("*.py")}


def test_all_names_exist_and_are_documented():
    assert len(hrnn_jax.__all__) == len(set(hrnn_jax.__all__))
    for name in hrnn_jax.__all__:
        obj = getattr(hrnn_jax, name)
        assert obj.__doc__, name
    # an exported function never hides a module of the same name
    assert not set(hrnn_jax.__all__) & MODULES


def test_every_model_keeps_the_contract():
    for name in compare.NEURAL:
        model = compare.build_model(name, 10, ModelConfig(hidden=4), n_users=3)
        assert isinstance(model, models.Model), name
    assert isinstance(models.HRNN(10, cells.GRU(4), user_cell=cells.GRU(4)), models.Model)
    assert not isinstance(object(), models.Model)


def test_training_and_predict_are_typed_with_the_contract():
    for fn in (training.init_state, training.make_train_step, training.fit,
               predict.states_at, predict.final_states, predict.model_ranks,
               predict.evaluate_model, predict.recommend):
        assert typing.get_type_hints(fn)["model"] is models.Model, fn.__name__


def test_no_module_imports_another_modules_private_names():
    """``from hrnn_jax.x import _y`` and ``x._y`` (x a module of the package) are not used."""
    offences = []
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                mod = node.module.split(".")[-1]
                inside = node.module.startswith("hrnn_jax") or node.level > 0
                for a in node.names:
                    if inside and a.name.startswith("_") and mod != path.stem:
                        offences.append(f"{path.name}: from {node.module} import {a.name}")
                    if node.module == "hrnn_jax" and a.name in MODULES:
                        aliases[a.asname or a.name] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                offences.append(f"{path.name}: {node.value.id}.{node.attr}")
    assert not offences, offences
