"""Layers point one way: a module imports from its own layer and the layers below it, never from one above
(the README's "Layout"). Every project .py file is parsed with `ast`, nothing is imported or run, and an import
inside a function counts as much as one at the top of a file.

Imports by a name in a string (importlib, a TFX module path) are not seen.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from core.config import PROJECT_ROOT

# Bottom first. A package may import the ones before it in this list, never the ones after it.
LAYERS = (
    "core",         # configuration, blob storage, local services, the Flink cluster, Beam flags, terminal output
    "data_schema",  # class names, image size, feature keys, the curated schema
    "ingestion",    # input layouts, image checks, the ingestion job, manifests
    "sample_data",  # the offline stand-in for Places365; writes ingestion's layouts
    "registry",     # the MLflow model registry: alias, push, champion, versions, the model flavour
    "components",   # the custom TFX components and the Trainer's model code
    "pipeline",     # the pipeline's wiring, runner, tracking and reports
    "serving",      # the HTTP endpoint, predict and batch-predict
    "cli",          # `./places`, which drives all of the above
    "tests",
    "bench",        # benchmarks, which reuse test helpers (tests/champion.py)
)
# Files at the root (setup.py, conftest.py) sit on top, beside tests/.
_ROOT_LAYER = len(LAYERS)

# Imports that break the order, as (file, imported module), each waiting for its code to move. Empty: keep it so.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def project_files() -> list[Path]:
    """Every .py file of the project, relative to its root; hidden folders (.venv, .state) and node_modules aside."""
    found = []
    for folder, subfolders, files in os.walk(PROJECT_ROOT):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith(".") and name != "node_modules")
        found += [Path(folder, name).relative_to(PROJECT_ROOT) for name in sorted(files) if name.endswith(".py")]
    return found


def layer_of(path: Path) -> int:
    """The index in LAYERS of the file at `path`; a package in no layer fails test_every_package_has_a_layer.

    A module's own tests (x_test.py and conftest.py beside it) are tests: they sit on top, like tests/ (or on
    their own package, where that is above tests/, as bench/ is), and may use the pipeline, the test fixtures or
    anything else to set up what they check."""
    placed = len(path.parts) > 1 and path.parts[0] in LAYERS
    own = LAYERS.index(path.parts[0]) if placed else _ROOT_LAYER
    if path.name.endswith("_test.py") or path.name == "conftest.py":
        return max(own, LAYERS.index("tests"))
    return own


def imported_modules(source: str, filename: str) -> list[tuple[int, str]]:
    """(line, module) of each absolute import anywhere in `source`. A relative import cannot leave its top-level
    package, so it cannot cross a layer."""
    modules = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            modules += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.append((node.lineno, node.module))
    return sorted(modules)


def upward_imports(path: Path, source: str) -> list[str]:
    """Each import in `source` (the file at `path`) of a project package above the file's own layer."""
    own = layer_of(path)
    found = []
    for line, module in imported_modules(source, str(path)):
        package = module.split(".")[0]
        if package in LAYERS and LAYERS.index(package) > own and (path.as_posix(), module) not in KNOWN_EXCEPTIONS:
            found.append(f"{path.as_posix()}:{line} imports {module}, but {package}/ is above {path.parts[0]}/")
    return found


def test_every_package_has_a_layer():
    packages = {path.parts[0] for path in project_files() if len(path.parts) > 1}
    unplaced = sorted(packages - set(LAYERS))
    assert not unplaced, (f"{', '.join(name + '/' for name in unplaced)} in no layer: add each to LAYERS in "
                          f"tests/test_layers.py and to the layer order in the README's \"Layout\"")


def test_no_module_imports_a_layer_above_its_own():
    broken = [problem for path in project_files()
              for problem in upward_imports(path, (PROJECT_ROOT / path).read_text())]
    order = " -> ".join(LAYERS)
    assert not broken, ("imports against the layer order (" + order + "); move the code to the layer that "
                        "needs it, or down to one both use:\n" + "\n".join(broken))


def test_every_known_exception_is_still_needed():
    present = {(path.as_posix(), module) for path in project_files()
               for _, module in imported_modules((PROJECT_ROOT / path).read_text(), str(path))}
    gone = sorted(KNOWN_EXCEPTIONS - present)
    assert not gone, f"no longer imported, remove from KNOWN_EXCEPTIONS in tests/test_layers.py: {gone}"


def test_an_import_inside_a_function_counts():
    source = "import os\n\n\ndef lookup():\n    from serving import model\n    from core.config import Config\n"
    assert upward_imports(Path("core/example.py"), source) == [
        "core/example.py:5 imports serving, but serving/ is above core/"]
