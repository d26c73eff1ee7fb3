"""
The size budget in wc -l lines: the paper's core (model.py, train.py, fold.py: "the whole paper in about 1,000
lines"), the reading path (the five scripts and the local modules they import), Python outside tests/, the README.
Files are found by walking the folder, not by asking git, so a ZIP download counts what a clone counts.
$ python experiments/lines.py           # prints the figures; exits 1 if one is over its budget
"""
import ast
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = ('model.py', 'train.py', 'fold.py')
SCRIPTS = CORE + ('sample.py', 'bench.py')
BUDGET = {'paper core': 1100, 'reading path': 1800, 'python outside tests': 3000, 'README.md': 300}


def repo_files(*suffixes):
    """The repo's files ending in one of suffixes, as paths relative to it, sorted; hidden folders (.git, .ci),
    caches and run outputs (out*/, which .gitignore leaves out of the repo) are not the repo's own."""
    found = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(('.', '__pycache__', 'out'))]
        found += [os.path.relpath(os.path.join(root, f), REPO) for f in files if f.endswith(suffixes)]
    return sorted(found)


def local_imports(path):
    """The repo's own modules that the file at path imports (anywhere in it, top-level or inside a function)."""
    nodes = list(ast.walk(ast.parse(open(os.path.join(REPO, path)).read())))
    names = [a.name for n in nodes if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in nodes if isinstance(n, ast.ImportFrom) and n.module and not n.level]
    return [f for f in (n.replace('.', '/') + '.py' for n in names) if os.path.isfile(os.path.join(REPO, f))]


def count(path):
    with open(os.path.join(REPO, path)) as f:
        return sum(1 for _ in f)


def figures():
    seen, todo = set(), list(SCRIPTS)
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += local_imports(path)
    return {'paper core': sum(map(count, CORE)), 'reading path': sum(map(count, seen)),
            'python outside tests': sum(count(f) for f in repo_files('.py') if not f.startswith('tests' + os.sep)),
            'README.md': count('README.md')}, sorted(seen)


if __name__ == '__main__':
    sizes, path = figures()
    for name, lines in sizes.items():
        print(f"{name}: {lines} lines (budget {BUDGET[name]})")
    print("reading path: " + ', '.join(path))
    sys.exit(any(sizes[name] > BUDGET[name] for name in BUDGET))
