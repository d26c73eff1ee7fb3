"""
The size budget, counted like wc -l (blank and comment lines included): the paper's core (model.py, train.py,
fold.py: the design card's "whole paper in about 1,000 lines"), the reading path (the five scripts and every local
module they import), all Python outside tests/, and the README. The README quotes these figures. Files are found
by walking the folder, not by asking git, so a ZIP download counts what a clone counts.
$ python experiments/lines.py           # prints the figures; exits 1 if one is over its budget
"""
import ast
import io
import os
import sys
import tokenize

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = ('model.py', 'train.py', 'fold.py')
SCRIPTS = CORE + ('sample.py', 'bench.py')
BUDGET = {'paper core': 1100, 'reading path': 1700, 'python outside tests': 2700, 'README.md': 300}
SKIP = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)


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
    return {'paper core': sum(map(count, CORE)), 'reading path': sum(map(count, seen)),
            'python outside tests': sum(count(f) for f in repo_files('.py') if not f.startswith('tests' + os.sep)),
            'README.md': count('README.md')}, sorted(seen)


if __name__ == '__main__':
    sizes, path = figures()
    for name, lines in sizes.items():
        print(f"{name}: {lines} lines (budget {BUDGET[name]})")
    print("reading path by kind: " + ', '.join(f"{k} {v}" for k, v in kinds(path).items()))
    print("reading path: " + ', '.join(path))
    sys.exit(any(sizes[name] > BUDGET[name] for name in BUDGET))
