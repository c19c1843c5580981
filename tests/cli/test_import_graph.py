"""The package imports one way: every ``import`` inside ``libra/`` (module level or inside a function) is an
edge of a graph over libra's modules; that graph must be acyclic, and between packages every edge must point
down ``LAYERS`` (the order the README's Layout states).

A loop is a design smell even when lazy imports keep it from failing at start-up (the command line
importing a pipeline that builds command-line arguments to call an evaluation, say): the layers it crosses
are no longer in one direction.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "libra"

# libra's packages (and top-level modules) from the bottom up: a module may import its own package and any
# lower layer, never a higher one nor its own layer's other members (kernels, libra_kernels, sit below all).
LAYERS = (
    ("libra", "config", "progress"),  # leaf utilities: the version, config loading, progress bars
    ("verify", "judge"),  # answer checking; templates, verdicts and the judge kinds
    ("rewards", "models", "report"),  # the paper's rewards; model files; tables, report sections, plots
    ("data",),  # records, V2V, benches, pairs
    ("rollout",),  # engines and weight sync
    ("eval",),  # judging benches, metrics, generations
    ("train",),  # trainers, rejection sampling
    ("mini",),  # Libra-Mini, the whole method
    ("cli",),  # the command line
    ("__main__",),  # python -m libra
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the libra modules it imports (a ``from pkg import name`` counts as ``pkg.name`` when that is
    a module, else as ``pkg``)."""
    files = {_module_name(p): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for target in targets:
                while target and target not in files:  # `import libra.a.b` of a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_checker_finds_a_loop():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def layer_violations(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    """The imports between packages that do not point down ``layers``, as ``a -> b`` lines."""
    rank = {pkg: i for i, names in enumerate(layers) for pkg in names}

    def package(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else parts[0]

    unknown = sorted({package(m) for m in graph} - set(rank))
    assert not unknown, f"packages missing from LAYERS: {unknown}"
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if package(a) != package(b) and rank[package(a)] <= rank[package(b)])


def test_the_layer_check_finds_an_upward_import():
    graph = {"libra.data.x": {"libra.eval.y", "libra.judge.z"}, "libra.eval.y": {"libra.data.x"},
             "libra.judge.z": set(), "libra.verify.w": {"libra.judge.z"}}
    assert layer_violations(graph) == ["libra.data.x -> libra.eval.y", "libra.verify.w -> libra.judge.z"]


def test_packages_import_down_the_layers():
    assert layer_violations(import_graph()) == []


def test_libra_has_no_import_loops():
    graph = import_graph()
    assert "libra.cli" in graph and graph["libra.cli"], "the checker found no imports: it is broken"
    assert find_cycles(graph) == []


if __name__ == "__main__":
    for cycle in find_cycles(import_graph()):
        print(" <-> ".join(cycle))
    print("\n".join(layer_violations(import_graph())))
