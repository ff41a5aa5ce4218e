"""The package's shape (#37): no import cycle, function-level imports
counted, and the library never imports the application (runs, the trainer,
configs, ablation, export, review, the command line)."""

import ast
import os

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.backend_independent("torch")

APPLICATION = ("keras_amb.app", "keras_amb.cli")


def _module(path):
    relative = os.path.relpath(path, REPO)
    if relative.startswith("cli" + os.sep):
        relative = os.path.join("keras_amb", relative)  # installed as keras_amb.cli
    name = relative[:-3].replace(os.sep, ".")
    return name[:-len(".__init__")] if name.endswith(".__init__") else name


def import_graph():
    """`{module: {keras_amb modules it imports anywhere in its body}}`."""
    files = [os.path.join(folder, name) for base in ("keras_amb", "cli")
             for folder, _, names in os.walk(os.path.join(REPO, base))
             for name in names if name.endswith(".py")]
    modules = {_module(f) for f in files}
    graph = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                subs = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [t for t in subs if t in modules] or [node.module]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target.startswith("keras_amb"):
                    deps.add(target)
        graph[_module(path)] = deps - {_module(path)}
    return graph


def _cycles(graph):
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    assert _cycles(import_graph()) == []
    # The check sees a cycle when there is one.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]


def test_the_library_imports_no_application():
    def application(name):
        return any(name == a or name.startswith(a + ".") for a in APPLICATION)

    reaching_up = {module: sorted(d for d in deps if application(d))
                   for module, deps in import_graph().items()
                   if module.startswith("keras_amb") and not application(module)
                   and module != "keras_amb"}
    assert {m: d for m, d in reaching_up.items() if d} == {}


def test_the_moved_modules_answer_to_their_old_names_without_an_import_hook():
    import sys

    import keras_amb
    from keras_amb import trainer
    from keras_amb.app import trainer as moved

    assert trainer is moved and keras_amb.review.__name__ == "keras_amb.app.review"
    assert not [f for f in sys.meta_path if type(f).__module__.startswith("keras_amb")]
