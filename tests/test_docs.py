"""The repo reads on its own and its docs stay true: no reference leaves it, every §n the code cites exists in
METHOD.md, and the README quotes the line counts that experiments/lines.py measures."""
import os
import re

from conftest import REPO

import lines
from lines import repo_files


def read(path):
    with open(os.path.join(REPO, path), encoding='utf-8') as f:
        return f.read()


def test_no_reference_leaves_the_repo():
    paths = repo_files('.py', '.md', '.sh')
    assert {'model.py', 'README.md', 'METHOD.md', os.path.join('experiments', 'bench_gpu.sh')} <= set(paths)
    for path in paths:
        if path.startswith('tests' + os.sep):
            continue  # tests and CI read the shared data through NANOTAPER_SHARED
        text = read(path)
        for pattern in (r'\.\./shared', r'PAPER\.md', r'\bissue \d+', r'the issue \d'):
            assert not re.search(pattern, text, re.I), (path, pattern)


def test_every_section_the_code_cites_is_in_method_md():
    sections = set(re.findall(r'^## §(\d+)', read('METHOD.md'), re.M))
    cited = {(path, n) for path in repo_files('.py') for n in re.findall(r'§(\d+)', read(path))}
    assert cited and all(n in sections for _, n in cited), sorted((p, n) for p, n in cited if n not in sections)


def test_the_readme_quotes_the_measured_line_counts_and_each_is_within_its_budget():
    sizes, path = lines.figures()
    readme = ' '.join(read('README.md').split())  # the figures may wrap
    for quoted in (f"core (`model.py`, `train.py`, `fold.py`) is {sizes['paper core']:,} lines",
                   f"is {sizes['reading path']:,} lines",
                   f"tests/` {sizes['python outside tests']:,} lines"):
        assert quoted in readme, (quoted, sizes)
    for name, budget in lines.BUDGET.items():
        assert sizes[name] <= budget, (name, sizes[name], budget)
        assert f"{budget:,} lines" in readme or f"budget {budget:,}" in readme, budget
    assert {'model.py', 'train.py', 'configurator.py', 'checkpoint.py', 'runtime.py'} <= set(path)


def test_no_line_over_120_characters():
    paths = repo_files('.py')
    assert len(paths) > 30 and os.path.join('tests', 'test_docs.py') in paths
    for path in paths:
        for number, line in enumerate(read(path).splitlines(), 1):
            assert len(line) <= 120, f"{path}:{number} is {len(line)} characters"
