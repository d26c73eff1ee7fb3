"""Configuration for every script: defaults in a dataclass, then config files, then --key=value overrides.
A config file is plain assignments (key = value). `extends = 'taper.py'` first applies that file (a path relative
to this one), so a variant states only what it changes. Overrides win over files wherever they stand on the
command line, and each value must fit its field's type (an int is fine for a float) and range (Positive, ...)."""
import ast
import dataclasses
import difflib
import inspect
import os
import re
import runpy
import sys
import types
import typing


class UserError(Exception):
    """Every bad input (config, data, checkpoint, option): printed as one line, `error: ...`, never as a Traceback."""


# Field types that carry their range [least, below): a value outside it is refused by name, as one of the wrong type
Count = typing.Annotated[int, 0]          # steps, a seed, threads: 0 and up
Positive = typing.Annotated[int, 1]       # sizes and intervals
NonNegative = typing.Annotated[float, 0]  # rates, weights, a clipping norm
Fraction = typing.Annotated[float, 0, 1]  # [0, 1): dropout, AdamW's betas


def coerce(key, value, typ, source):
    """value as typ: an int is fine for a float, 'true'/'false' for a bool, and a value of a ranged type (Count,
    Positive, ...) lies in its range; anything else raises UserError."""
    if typing.get_origin(typ) in (typing.Union, types.UnionType):  # `int | None`: None, or the other type
        if value is None or value == 'None':
            return None
        typ = next(a for a in typing.get_args(typ) if a is not type(None))
    if typing.get_origin(typ) is typing.Annotated:
        base, least, *below = typing.get_args(typ)  # below: [] when nothing bounds it from above
        value = coerce(key, value, base, source)
        if value < least or below and value >= below[0]:
            bound = f"lie in [{least}, {below[0]})" if below else f"be >= {least}"
            raise UserError(f"{source}: {key} must {bound}, got {value!r}")
        return value
    if typ is bool and isinstance(value, str) and value.lower() in ('true', 'false'):
        return value.lower() == 'true'
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is str and not isinstance(value, str):
        return str(value)  # --out_dir=123 names the folder '123'
    if isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
        return value
    raise UserError(f"{source}: {key} must be {'True or False' if typ is bool else typ.__name__}, got {value!r}")


def read_file(path, seen=()):
    """The assignments of a config file, after those of the file it extends."""
    if not os.path.isfile(path):
        raise UserError(f"config file {path!r} not found (give a path such as config/taper.py)")
    if path in seen:
        raise UserError(f"{path} extends itself through {' -> '.join(seen)}")
    try:
        namespace = runpy.run_path(path)  # a private namespace, never our globals
    except Exception as e:  # a config file is user input: its mistakes are one line too
        raise UserError(f"{path} does not run as Python: {type(e).__name__}: {e}") from None
    parent = namespace.pop('extends', None)
    values = read_file(os.path.join(os.path.dirname(path), parent), seen + (path,)) if parent else {}
    return values | {key: (value, path) for key, value in namespace.items()
                     if not key.startswith('_') and not callable(value) and not isinstance(value, types.ModuleType)}


def parse_config(cls, argv, base=None):
    """cls from [config files] [--key=value ...], each value typed and checked against cls's fields; base(values), if
    given, supplies the values beneath the command line's (a resumed run's own saved config)."""
    hints = typing.get_type_hints(cls, include_extras=True)  # every field's type, by name, with its range
    from_files, overrides = {}, {}
    for arg in argv:
        if arg in ('-h', '--help'):
            print(usage(cls))
            sys.exit(0)
        if not arg.startswith('--'):
            from_files.update(read_file(arg))
            continue
        key, sep, raw = arg[2:].partition('=')
        if not sep and hints.get(key) is bool:  # a bare switch: --compile is --compile=True
            raw = 'True'
        elif not sep:
            raise UserError(f"{arg}: overrides take the form --key=value")
        try:  # '3e-4' -> 0.0003, 'False' -> False; what is not a Python literal ('cpu') stays text
            overrides[key] = (raw if hints.get(key) is str else ast.literal_eval(raw), arg)
        except (ValueError, SyntaxError):
            overrides[key] = (raw, arg)
    values = {}
    for key, (value, source) in {**from_files, **overrides}.items():
        if key not in hints:
            near = difflib.get_close_matches(key, hints, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise UserError(f"{source}: unknown config key {key!r}{hint}; --help lists them")
        values[key] = coerce(key, value, hints[key], source)
    try:
        return cls(**{**(base(values) if base else {}), **values})
    except ValueError as e:
        raise UserError(str(e)) from None


def usage(cls):
    """--help: every key, its default, and the comment beside it in cls's source."""
    comments = dict(re.findall(r'^\s+(\w+):[^#\n]*#\s*(.*)$', inspect.getsource(cls), re.M))
    return '\n'.join([f"usage: python {os.path.relpath(sys.argv[0])} [config.py ...] [--key=value ...]", ""] + [
        f"  --{f.name}={f.default!r}".ljust(34) + f"  {comments.get(f.name, '')}" for f in dataclasses.fields(cls)])


def run_main(main, cls, base=None):
    """`python script.py [config.py] [--key=value]` runs main(cfg); a UserError or Ctrl-C ends the run in one line."""
    try:
        return main(parse_config(cls, sys.argv[1:], base))
    except UserError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("interrupted")
