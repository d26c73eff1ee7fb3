"""
The size budget, counted like wc -l (blank and comment lines included): the reading path (the five scripts and
every local module they import), all Python outside tests/, and the README. The README quotes these figures.
$ python experiments/lines.py           # prints the figures; exits 1 if one is over its budget
"""
import ast
import io
import os
import subprocess
import sys
import tokenize

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ('model.py', 'train.py', 'fold.py', 'sample.py', 'bench.py')
BUDGET = {'reading path': 1250, 'python outside tests': 2000, 'README.md': 300}
SKIP = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)


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


def kinds(paths):
    """{'code', 'docstring', 'comment', 'blank'}: how many lines of the files are each (a line of code that also
    holds a comment is code)."""
    found = dict(code=0, docstring=0, comment=0, blank=0)
    owners = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for path in paths:
        source = open(os.path.join(REPO, path)).read()
        docs = {n for node in ast.walk(ast.parse(source))
                if isinstance(node, owners) and ast.get_docstring(node, clean=False) is not None
                for n in range(node.body[0].lineno, node.body[0].end_lineno + 1)}
        code = {n for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type not in SKIP
                for n in range(tok.start[0], tok.end[0] + 1)}
        for n, line in enumerate(source.splitlines(), 1):
            kind = 'blank' if not line.strip() else 'docstring' if n in docs else 'code' if n in code else 'comment'
            found[kind] += 1
    return found


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
    print("reading path by kind: " + ', '.join(f"{k} {v}" for k, v in kinds(path).items()))
    print("reading path: " + ', '.join(path))
    sys.exit(any(sizes[name] > BUDGET[name] for name in BUDGET))
