"""
The size budget, counted like wc -l (blank and comment lines included): the reading path (the five scripts and
every local module they import), all Python outside tests/, and the README. The README quotes these figures.
$ python experiments/lines.py           # prints the figures; exits 1 if one is over its budget
"""
import ast
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ('model.py', 'train.py', 'fold.py', 'sample.py', 'bench.py')
BUDGET = {'reading path': 1250, 'python outside tests': 2000, 'README.md': 300}


def local_imports(path):
    """The repo's own modules that the file at path imports (anywhere in it, top-level or inside a function)."""
    found = []
    for node in ast.walk(ast.parse(open(os.path.join(REPO, path)).read())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        found += [f for f in (n.replace('.', '/') + '.py' for n in names) if os.path.isfile(os.path.join(REPO, f))]
    return found


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
    tracked = subprocess.run(['git', 'ls-files', '*.py'], cwd=REPO, capture_output=True, text=True).stdout.split()
    return {'reading path': sum(map(count, seen)),
            'python outside tests': sum(count(f) for f in tracked if not f.startswith('tests/')),
            'README.md': count('README.md')}, sorted(seen)


if __name__ == '__main__':
    sizes, path = figures()
    for name, lines in sizes.items():
        print(f"{name}: {lines} lines (budget {BUDGET[name]})")
    print("reading path: " + ', '.join(path))
    sys.exit(any(sizes[name] > BUDGET[name] for name in BUDGET))
