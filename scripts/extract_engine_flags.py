#!/usr/bin/env python
"""Extract the command-line flag schema of a serving engine from the engine's own argument parser.

Writes `serveplan/render/engines/schemas/<engine>-<version>.json`::

    {"engine", "version", "source", "extracted_with",
     "flags": {"--tensor-parallel-size": {"type": "int", "choices": null, "nargs": null, "takes_value": true}, ...},
     "positionals": [...], "known_values": {flag: [...]}, ...}

How each engine is read (dynamic first, static fallback):

vllm     dynamic: `vllm.entrypoints.{openai,common}.cli_args.make_arg_parser(FlexibleArgumentParser())`, the parser
         `vllm serve` builds. On a machine with no accelerator vLLM cannot infer a device and `DeviceConfig()` (used
         only for help-text defaults) raises; then the CPU platform is installed as `current_platform` and the parser
         is built again: this changes defaults shown in --help, never which flags exist or their types.
         static (`--source DIR`, a vLLM source tree at the tag, e.g. an unpacked wheel or `git archive v0.26.0`):
         AST over `EngineArgs.add_cli_args` / `AsyncEngineArgs.add_cli_args` / `make_arg_parser` and the config
         dataclass fields they read through `get_kwargs(Config)`. Field annotations are evaluated symbolically and
         mapped the way `get_kwargs` maps them: bool -> `--X` and `--no-X` (BooleanOptionalAction), Literal -> choices
         (metavar only, not enforced, when `str` is also allowed), list/tuple -> nargs, int/float/str -> type.
sglang   dynamic: `sglang.srt.server_args.ServerArgs.add_cli_args(argparse.ArgumentParser())` (what
         `python -m sglang.launch_server` parses with). static (`--source DIR`): the `A[T, Arg(...)]` fields of the
         classes under `sglang/srt/arg_groups/fields/` mapped as `add_cli_args_from_dataclass` maps them, plus the
         explicit `parser.add_argument` calls in `ServerArgs.add_cli_args`.
tgi      static only (`--source DIR` of a huggingface/text-generation-inference checkout, or its
         launcher/src/main.rs): `text-generation-launcher` is Rust, parsed by clap; the `#[clap(long ...)]` fields of
         `struct Args` and the `ValueEnum` enums they use (see `static_tgi`).
trtllm   dynamic: the click command `tensorrt_llm.commands.serve.main` / `serve` (its `params`). static (`--source`
         DIR or a serve.py file): the `@click.option(...)` decorators of the `serve` command in
         `tensorrt_llm/commands/serve.py`.

Usage::

    python scripts/extract_engine_flags.py vllm --version 0.26.0 [--source /path/to/vllm-src] [--python /venv/bin/python]
    python scripts/extract_engine_flags.py sglang --version 0.5.23 [--source ...]
    python scripts/extract_engine_flags.py tgi --version 3.3.7 --source launcher/src/main.rs --source-note "..."
    python scripts/extract_engine_flags.py trtllm --version 1.2.1 --source /path/to/serve.py --source-note "..."

`--python` runs the dynamic extraction in another interpreter (a side venv holding the engine, so the project venv
never has to install it). Fetched engine source is only read, never committed.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "serveplan" / "render" / "engines" / "schemas"


# ============================================================================================ dynamic: argparse
def _type_name(t) -> str:
    """A readable name for an argparse `type=` callable."""
    if t is None:
        return "str"
    if isinstance(t, type):
        return {"int": "int", "float": "float", "str": "str", "bool": "bool"}.get(t.__name__, t.__name__)
    name = getattr(t, "__name__", type(t).__name__)
    # vLLM wraps types: optional_type(int) -> _optional_type, parse_type(json.loads) -> _parse_type
    if name in ("_optional_type", "_parse_type") and getattr(t, "__closure__", None):
        for cell in t.__closure__:
            inner = cell.cell_contents
            if callable(inner):
                return _type_name(inner)
    return {
        "human_readable_int": "int", "human_readable_int_or_auto": "int", "loads": "json",
        "parse_dataclass": "json", "union_dict_and_str": "json_or_str", "<lambda>": "str",
    }.get(name, name)


def actions_to_flags(parser: argparse.ArgumentParser) -> tuple[dict, list]:
    flags: dict[str, dict] = {}
    positionals: list[str] = []
    for act in parser._actions:
        if isinstance(act, argparse._HelpAction):
            continue
        if not act.option_strings:
            positionals.append(act.dest)
            continue
        takes_value = act.nargs != 0
        if isinstance(act, argparse.BooleanOptionalAction) or (not takes_value and act.type is None):
            typ = "bool"
        else:
            typ = _type_name(act.type)
        choices = sorted(str(c) for c in act.choices) if act.choices is not None else None
        nargs = act.nargs if act.nargs not in (None, 0) else None
        for opt in act.option_strings:
            flags[opt] = {"type": typ, "choices": choices, "nargs": nargs, "takes_value": takes_value}
    return dict(sorted(flags.items())), positionals


def _dynamic_vllm() -> dict:
    import vllm  # noqa: F401
    try:
        from vllm.entrypoints.openai.cli_args import make_arg_parser
        where = "vllm.entrypoints.openai.cli_args"
    except ImportError:  # moved to entrypoints/common by 0.33
        from vllm.entrypoints.common.cli_args import make_arg_parser
        where = "vllm.entrypoints.common.cli_args"
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    note = ""
    try:
        parser = make_arg_parser(FlexibleArgumentParser())
    except RuntimeError as e:  # no accelerator: DeviceConfig() cannot infer a device (help defaults only)
        if "device type" not in str(e):
            raise
        import vllm.platforms as platforms
        from vllm.platforms.cpu import CpuPlatform

        platforms._current_platform = CpuPlatform()
        parser = make_arg_parser(FlexibleArgumentParser())
        note = " (no accelerator here: CpuPlatform installed as current_platform to build help defaults)"
    flags, positionals = actions_to_flags(parser)
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

    return {
        "version": vllm.__version__,
        "extracted_with": f"dynamic: {where}.make_arg_parser(FlexibleArgumentParser())"
                          + note,
        "flags": flags, "positionals": positionals,
        "known_values": {"--quantization": sorted(QUANTIZATION_METHODS)},
    }


def _dynamic_sglang() -> dict:
    import sglang
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    flags, positionals = actions_to_flags(parser)
    return {"version": getattr(sglang, "__version__", "?"),
            "extracted_with": "dynamic: sglang.srt.server_args.ServerArgs.add_cli_args(argparse.ArgumentParser())",
            "flags": flags, "positionals": positionals}


def _dynamic_trtllm() -> dict:
    import tensorrt_llm
    from tensorrt_llm.commands import serve as serve_mod

    cmd = getattr(serve_mod, "serve")
    return {"version": tensorrt_llm.__version__,
            "extracted_with": "dynamic: click params of tensorrt_llm.commands.serve.serve",
            **_click_params_to_flags(cmd.params)}


def _click_params_to_flags(params) -> dict:
    import click

    flags, positionals = {}, []
    for p in params:
        if isinstance(p, click.Argument):
            positionals.append(p.name)
            continue
        is_flag = getattr(p, "is_flag", False)
        choices = sorted(map(str, p.type.choices)) if isinstance(p.type, click.Choice) else None
        typ = "bool" if is_flag else {"INT": "int", "FLOAT": "float", "STRING": "str"}.get(p.type.name.upper(), "str")
        if choices is not None:
            typ = "str"
        for opt in list(p.opts) + list(p.secondary_opts):
            flags[opt] = {"type": typ, "choices": choices, "nargs": None, "takes_value": not is_flag}
    return {"flags": dict(sorted(flags.items())), "positionals": positionals}


DYNAMIC = {"vllm": _dynamic_vllm, "sglang": _dynamic_sglang, "trtllm": _dynamic_trtllm}
# TGI's launcher is Rust (clap): static only.


# ============================================================================================ static: shared
class Mod:
    """A parsed module of the source tree: its top-level names (aliases, classes, imports)."""

    def __init__(self, tree: "Tree", name: str, path: Path):
        self.tree, self.name, self.path = tree, name, path
        self.ast = ast.parse(path.read_text(), str(path))
        self.assigns: dict[str, ast.expr] = {}
        self.classes: dict[str, ast.ClassDef] = {}
        self.imports: dict[str, tuple[str, str | None]] = {}  # local name -> (module, attr or None)
        for node in self.ast.body:
            self._index(node)

    def _index(self, node):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            self.assigns[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            self.assigns[node.target.id] = node.value
        elif hasattr(ast, "TypeAlias") and isinstance(node, getattr(ast, "TypeAlias")):
            self.assigns[node.name.id] = node.value
        elif isinstance(node, ast.ClassDef):
            self.classes[node.name] = node
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            base = node.module
            if node.level:
                parts = self.name.split(".")[: -node.level]
                base = ".".join(parts + ([node.module] if node.module else []))
            for a in node.names:
                self.imports[a.asname or a.name] = (base, a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                self.imports[a.asname or a.name.split(".")[0]] = (a.name, None)
        elif isinstance(node, (ast.If, ast.Try)):
            for sub in node.body:
                self._index(sub)


class Tree:
    """A source tree (the engine's package directory's parent), modules parsed lazily."""

    def __init__(self, root: Path):
        self.root = root
        self._mods: dict[str, Mod | None] = {}

    def mod(self, name: str) -> Mod | None:
        if name not in self._mods:
            p = self.root / (name.replace(".", "/") + ".py")
            if not p.exists():
                p = self.root / name.replace(".", "/") / "__init__.py"
            self._mods[name] = Mod(self, name, p) if p.exists() else None
        return self._mods[name]

    def lookup(self, mod: Mod, name: str, depth: int = 0):
        """Resolve a top-level name: ('alias', Mod, expr) | ('class', Mod, ClassDef) | ('external', qualname)."""
        if depth > 12:
            return ("external", name)
        if name in mod.classes:
            return ("class", mod, mod.classes[name])
        if name in mod.assigns:
            return ("alias", mod, mod.assigns[name])
        if name in mod.imports:
            src, attr = mod.imports[name]
            if attr is None:
                return ("external", src)
            other = self.mod(src)
            if other is None:
                sub = self.mod(f"{src}.{attr}")
                return ("module", sub) if sub else ("external", f"{src}.{attr}")
            return self.lookup(other, attr, depth + 1)
        return ("external", name)


BUILTIN = {"int", "float", "str", "bool", "bytes", "dict", "list", "tuple", "set", "frozenset", "type", "object"}


def eval_hint(tree: Tree, mod: Mod, node: ast.expr, depth: int = 0) -> list:
    """Evaluate a type annotation to a flat list of atoms (Union/Optional/Annotated flattened), each one of
    'int' 'float' 'str' 'bool' 'None' 'dict' 'any' 'other' 'dataclass' ('literal', values) ('list'|'tuple'|'set', elem).
    """
    if depth > 20:
        return ["other"]
    if isinstance(node, ast.Constant):
        if node.value is None:
            return ["None"]
        if isinstance(node.value, str):  # string annotation
            try:
                return eval_hint(tree, mod, ast.parse(node.value, mode="eval").body, depth + 1)
            except SyntaxError:
                return ["other"]
        return ["other"]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return eval_hint(tree, mod, node.left, depth + 1) + eval_hint(tree, mod, node.right, depth + 1)
    if isinstance(node, ast.Subscript):
        head = _dotted(node.value)
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        last = head.rsplit(".", 1)[-1]
        if last == "Literal":
            vals = []
            for a in args:
                if isinstance(a, ast.Constant):
                    vals.append(a.value)
                else:  # Literal[Alias] nests literals
                    for atom in eval_hint(tree, mod, a, depth + 1):
                        if isinstance(atom, tuple) and atom[0] == "literal":
                            vals.extend(atom[1])
            return [("literal", tuple(vals))]
        if last in ("Optional",):
            return eval_hint(tree, mod, args[0], depth + 1) + ["None"]
        if last == "Union":
            return [x for a in args for x in eval_hint(tree, mod, a, depth + 1)]
        if last == "Annotated":
            return eval_hint(tree, mod, args[0], depth + 1)
        if last in ("list", "List", "Sequence"):
            return [("list", eval_hint(tree, mod, args[0], depth + 1))]
        if last in ("set", "Set"):
            return [("set", eval_hint(tree, mod, args[0], depth + 1))]
        if last in ("tuple", "Tuple"):
            ell = any(isinstance(a, ast.Constant) and a.value is Ellipsis for a in args)
            return [("tuple", eval_hint(tree, mod, args[0], depth + 1), "+" if ell else len(args))]
        if last in ("dict", "Dict", "Mapping"):
            return ["dict"]
        if last in ("type", "Type", "Callable"):
            return ["other"]
        return eval_hint(tree, mod, node.value, depth + 1)
    name = _dotted(node)
    if name in BUILTIN:
        return [name if name not in ("bytes", "object") else "other"]
    if name in ("None", "NoneType"):
        return ["None"]
    if name in ("Any", "typing.Any"):
        return ["any"]
    if "." in name:  # module.attr
        head, attr = name.split(".", 1)
        found = tree.lookup(mod, head)
        if found[0] == "module" and found[1] is not None:
            return eval_hint(tree, found[1], ast.parse(attr, mode="eval").body, depth + 1)
        return ["other"]
    found = tree.lookup(mod, name)
    if found[0] == "alias":
        return eval_hint(tree, found[1], found[2], depth + 1)
    if found[0] == "class":
        return ["dataclass"] if _is_dataclass(found[2]) else ["other"]
    if found[1] in ("int", "float", "str", "bool"):
        return [found[1]]
    return ["other"]


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _is_dataclass(cls: ast.ClassDef) -> bool:
    for d in cls.decorator_list:
        n = _dotted(d.func if isinstance(d, ast.Call) else d)
        if n.rsplit(".", 1)[-1] in ("dataclass", "config"):
            return True
    return False


def class_fields(tree: Tree, mod: Mod, cls: ast.ClassDef) -> dict[str, tuple[Mod, ast.expr]]:
    """Annotated class-body fields, base classes (in the tree) first."""
    out: dict[str, tuple[Mod, ast.expr]] = {}
    for b in cls.bases:
        found = tree.lookup(mod, _dotted(b))
        if found[0] == "class":
            out.update(class_fields(tree, found[1], found[2]))
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            ann = node.annotation
            if _dotted(ann.value if isinstance(ann, ast.Subscript) else ann).endswith(("ClassVar", "InitVar")):
                continue
            out[node.target.id] = (mod, ann)
    return out


# ============================================================================================ static: vLLM
def _vllm_kwargs(atoms: list, name: str) -> dict:
    """The mapping vllm.engine.arg_utils._compute_kwargs applies to a field's type hints."""
    kinds = {a if isinstance(a, str) else a[0] for a in atoms}
    kw: dict = {}
    if "dataclass" in kinds:
        kw["type"] = "json"
    elif kinds == {"bool", "str", "None"}:
        kw.update(type="str", nargs="?")
    elif "bool" in kinds:
        kw["bool_optional"] = True
    elif "literal" in kinds:
        lit = next(a for a in atoms if isinstance(a, tuple) and a[0] == "literal")[1]
        t = type(lit[0]).__name__
        key = "metavar" if "str" in kinds else "choices"
        kw.update(type=t, **{key: sorted(lit, key=str)})
    elif kinds & {"tuple", "list", "set"}:
        coll = next(a for a in atoms if isinstance(a, tuple) and a[0] in ("tuple", "list", "set"))
        elem = coll[1]
        ek = {e if isinstance(e, str) else e[0] for e in elem}
        et = "str" if len(ek) > 1 else next(iter(ek))
        if et == "literal":
            lit = next(e for e in elem if isinstance(e, tuple))[1]
            kw["choices"] = sorted(lit, key=str)
            et = type(lit[0]).__name__
        kw["type"] = et if et in ("int", "float", "str") else "str"
        kw["nargs"] = coll[2] if coll[0] == "tuple" else "+"
    elif "int" in kinds:
        kw["type"] = "int"
    elif "float" in kinds:
        kw["type"] = "float"
    elif "dict" in kinds:
        kw["type"] = "json_or_str" if ("str" in kinds or "other" in kinds) else "json"
    else:
        kw["type"] = "str"
    if "None" in kinds and "bool" not in kinds and kw.get("choices"):
        kw["choices"] = list(kw["choices"]) + ["None"]
    return kw


def _entries(names: list[str], kw: dict) -> dict:
    out = {}
    if kw.get("bool_optional"):
        for n in names:
            out[n] = {"type": "bool", "choices": None, "nargs": None, "takes_value": False}
            if n.startswith("--"):
                out["--no-" + n[2:]] = {"type": "bool", "choices": None, "nargs": None, "takes_value": False}
        return out
    action = kw.get("action")
    takes = action not in ("store_true", "store_false", "store_const", "count")
    choices = kw.get("choices")
    for n in names:
        out[n] = {"type": "bool" if not takes else kw.get("type", "str"),
                  "choices": sorted(map(str, choices)) if choices is not None else None,
                  "nargs": kw.get("nargs"), "takes_value": takes}
    return out


def _literal_kw(tree: Tree, mod: Mod, call: ast.Call) -> dict:
    kw: dict = {}
    for k in call.keywords:
        if k.arg is None:
            continue
        v = k.value
        if k.arg == "type":
            n = _dotted(v)
            kw["type"] = n if n in ("int", "float", "str") else ("json" if n.endswith("loads") else "str")
        elif k.arg == "action":
            n = _dotted(v) or (v.value if isinstance(v, ast.Constant) else "")
            if n.endswith("BooleanOptionalAction"):
                kw["bool_optional"] = True
            else:
                kw["action"] = n
        elif k.arg == "choices":
            try:
                kw["choices"] = ast.literal_eval(v)
            except ValueError:
                if isinstance(v, ast.Name):
                    found = tree.lookup(mod, v.id)
                    if found[0] == "alias":
                        try:
                            kw["choices"] = ast.literal_eval(found[2])
                        except ValueError:
                            pass
        elif k.arg == "nargs":
            try:
                kw["nargs"] = ast.literal_eval(v)
            except ValueError:
                pass
    return kw


def _walk_add_argument(tree: Tree, mod: Mod, func: ast.FunctionDef, flags: dict, positionals: list,
                       kwsets: dict[str, tuple[Mod, ast.ClassDef]], frontend_cls=None):
    """Interpret the add_argument calls of one add_cli_args-like function."""
    var_alias: dict[str, tuple[str, str]] = {}  # moe_backend_kwargs -> (model_kwargs, "moe_backend")
    overrides: dict[tuple[str, str], dict] = {}
    for node in ast.walk(func):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            t, v = node.targets[0], node.value
            if isinstance(t, ast.Name) and isinstance(v, ast.Call) and _dotted(v.func).endswith("get_kwargs"):
                found = tree.lookup(mod, _dotted(v.args[0]))
                if found[0] == "class":
                    kwsets[t.id] = (found[1], found[2])
            elif isinstance(t, ast.Name) and isinstance(v, ast.Subscript) and isinstance(v.value, ast.Name):
                if isinstance(v.slice, ast.Constant):
                    var_alias[t.id] = (v.value.id, v.slice.value)
            elif isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant) and t.slice.value == "type":
                base = t.value
                key = None
                if isinstance(base, ast.Subscript) and isinstance(base.value, ast.Name):
                    key = (base.value.id, base.slice.value)
                elif isinstance(base, ast.Name) and base.id in var_alias:
                    key = var_alias[base.id]
                if key:
                    n = _dotted(v.func) if isinstance(v, ast.Call) else _dotted(v)
                    arg0 = _dotted(v.args[0]) if isinstance(v, ast.Call) and v.args else ""
                    overrides[key] = {"type": "json" if "loads" in (n + arg0) else "str"}
    for node in ast.walk(func):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument"):
            continue
        names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if not names:
            continue
        if not names[0].startswith("-"):
            positionals.append(names[0])
            continue
        kw: dict = {}
        for k in node.keywords:
            if k.arg is not None:
                continue
            src = k.value
            if isinstance(src, ast.Dict):  # **{**x_kwargs["f"], "default": None}
                src = next((v for kk, v in zip(src.keys, src.values) if kk is None), None)
            key = None
            if isinstance(src, ast.Subscript) and isinstance(src.value, ast.Name) and isinstance(src.slice, ast.Constant):
                key = (src.value.id, src.slice.value)
            elif isinstance(src, ast.Name) and src.id in var_alias:
                key = var_alias[src.id]
            if key and key[0] in kwsets:
                fmod, cls = kwsets[key[0]]
                fields = class_fields(tree, fmod, cls)
                if key[1] in fields:
                    fm, ann = fields[key[1]]
                    kw.update(_vllm_kwargs(eval_hint(tree, fm, ann), key[1]))
                kw.update(overrides.get(key, {}))
        kw.update(_literal_kw(tree, mod, node))
        flags.update(_entries(names, kw))


def static_vllm(root: Path) -> dict:
    tree = Tree(root)
    au = tree.mod("vllm.engine.arg_utils")
    # make_arg_parser lives in entrypoints/openai/cli_args.py up to 0.26, entrypoints/common/cli_args.py by 0.33
    ca = tree.mod("vllm.entrypoints.openai.cli_args") or tree.mod("vllm.entrypoints.common.cli_args")
    if au is None or ca is None:
        raise SystemExit(f"{root} does not hold vllm/engine/arg_utils.py and vllm/entrypoints/{{openai,common}}/"
                         "cli_args.py")
    flags: dict = {}
    positionals: list = []
    # make_arg_parser: explicit arguments, then FrontendArgs (every field), then AsyncEngineArgs.add_cli_args.
    mk = next(n for n in ca.ast.body if isinstance(n, ast.FunctionDef) and n.name == "make_arg_parser")
    _walk_add_argument(tree, ca, mk, flags, positionals, {})
    fa = ca.classes["FrontendArgs"]
    for fname, (fm, ann) in class_fields(tree, ca, fa).items():
        kw = _vllm_kwargs(eval_hint(tree, fm, ann), fname)
        if fname in ("allowed_origins", "allowed_methods", "allowed_headers", "default_chat_template_kwargs",
                     "reasoning_effort_map"):
            kw = {"type": "json"}
        elif fname == "middleware":
            kw = {"type": "str", "action": "append"}
        elif fname == "disable_access_log_for_endpoints":
            kw.pop("nargs", None)
        elif fname == "lora_modules":
            kw = {"type": "str", "nargs": "+"}
        flags.update(_entries(["--" + fname.replace("_", "-")], kw))
    for cname in ("EngineArgs", "AsyncEngineArgs"):
        cls = au.classes[cname]
        fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "add_cli_args")
        _walk_add_argument(tree, au, fn, flags, positionals, {})
    qm = tree.mod("vllm.model_executor.layers.quantization")
    known = {}
    if qm is not None and "QuantizationMethods" in qm.assigns:
        known["--quantization"] = sorted(eval_hint(tree, qm, qm.assigns["QuantizationMethods"])[0][1])
    cm = tree.mod("vllm.config.cache")  # by 0.33 `CacheDType | str`: the values are named, not enforced
    if flags.get("--kv-cache-dtype", {}).get("choices") is None and cm is not None and "CacheDType" in cm.assigns:
        known["--kv-cache-dtype"] = sorted(eval_hint(tree, cm, cm.assigns["CacheDType"])[0][1])
    return {"extracted_with": "static: AST over EngineArgs.add_cli_args / AsyncEngineArgs.add_cli_args / "
                              "make_arg_parser + config dataclass fields (get_kwargs mapping)",
            "flags": dict(sorted(flags.items())), "positionals": positionals, "known_values": known}


# ============================================================================================ static: SGLang
def static_sglang(root: Path) -> dict:
    tree = Tree(root)
    flags: dict = {}
    fdir = root / "sglang" / "srt" / "arg_groups" / "fields"
    for path in sorted(fdir.glob("*.py")):
        mod = tree.mod(f"sglang.srt.arg_groups.fields.{path.stem}")
        for cls in mod.classes.values():
            for node in cls.body:
                if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                    continue
                ann = node.annotation
                if not (isinstance(ann, ast.Subscript) and _dotted(ann.value) in ("A", "Annotated")):
                    continue
                parts = ann.slice.elts if isinstance(ann.slice, ast.Tuple) else [ann.slice]
                meta = {}
                has_meta = False
                for p in parts[1:]:
                    if isinstance(p, ast.Constant) and isinstance(p.value, str):
                        has_meta = True
                    elif isinstance(p, ast.Call) and _dotted(p.func) == "Arg":
                        has_meta = True
                        for k in p.keywords:
                            meta[k.arg] = _const(tree, mod, k.value)
                if not has_meta or meta.get("no_cli") is True:
                    continue
                names = [meta.get("cli_name") or "--" + node.target.id.replace("_", "-")] + list(meta.get("aliases") or [])
                atoms = [a for a in eval_hint(tree, mod, parts[0]) if a != "None"]
                if meta.get("action") not in (None, "?"):
                    kw = {"action": "store_true"} if "StoreTrue" in str(meta["action"]) else {"type": "str"}
                elif len(atoms) == 1 and isinstance(atoms[0], tuple) and atoms[0][0] == "literal":
                    lit = atoms[0][1]
                    ch = meta.get("choices")
                    kw = {"type": type(lit[0]).__name__,
                          "choices": list(ch) if isinstance(ch, (list, tuple, set)) else list(lit)}
                elif len(atoms) == 1 and isinstance(atoms[0], tuple) and atoms[0][0] == "list" and not meta.get("type_parser"):
                    elem = atoms[0][1]
                    kw = {"type": elem[0] if elem and elem[0] in ("int", "float") else "str",
                          "nargs": meta.get("nargs") or "+"}
                elif atoms == ["bool"]:
                    kw = {"action": "store_true"}
                else:
                    t = atoms[0] if len(atoms) == 1 and atoms[0] in ("int", "float", "str") else "str"
                    kw = {"type": t, "nargs": meta.get("nargs")}
                    if isinstance(meta.get("choices"), (list, tuple, set)):
                        kw["choices"] = list(meta["choices"])
                flags.update(_entries(names, kw))
    sa = tree.mod("sglang.srt.server_args")
    fn = next(n for n in sa.classes["ServerArgs"].body if isinstance(n, ast.FunctionDef) and n.name == "add_cli_args")
    _walk_add_argument(tree, sa, fn, flags, [], {})
    return {"extracted_with": "static: AST over sglang/srt/arg_groups/fields/*.py A[T, Arg(...)] fields "
                              "(add_cli_args_from_dataclass mapping) + ServerArgs.add_cli_args",
            "flags": dict(sorted(flags.items())), "positionals": []}


def _const(tree: Tree, mod: Mod, node: ast.expr):
    """A literal value, following module-level names (CHOICES = [...]) and list(...) / sorted(...) wrappers."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    if isinstance(node, ast.Call) and _dotted(node.func) in ("list", "sorted", "tuple") and node.args:
        return _const(tree, mod, node.args[0])
    if isinstance(node, ast.Name):
        found = tree.lookup(mod, node.id)
        if found[0] == "alias":
            return _const(tree, found[1], found[2])
    return _dotted(node) or "?"


# ============================================================================================ static: TRT-LLM
def static_trtllm(source: Path) -> dict:
    path = source if source.is_file() else source / "tensorrt_llm" / "commands" / "serve.py"
    mod_ast = ast.parse(path.read_text(), str(path))
    fn = next(n for n in ast.walk(mod_ast) if isinstance(n, ast.FunctionDef) and n.name == "serve")
    flags, positionals = {}, []
    for dec in fn.decorator_list:
        if not isinstance(dec, ast.Call):
            continue
        kind = _dotted(dec.func)
        names = [a.value for a in dec.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if kind == "click.argument":
            positionals.append(names[0])
            continue
        if kind != "click.option":
            continue
        kw = {k.arg: k.value for k in dec.keywords}
        is_flag = isinstance(kw.get("is_flag"), ast.Constant) and kw["is_flag"].value is True
        opts = [n for n in names if n.startswith("-")]
        secondary = []
        for n in list(opts):
            if "/" in n:  # "--x/--no-x"
                opts.remove(n)
                a, b = n.split("/", 1)
                opts.append(a)
                secondary.append(b)
                is_flag = True
        typ, choices = "str", None
        t = kw.get("type")
        if isinstance(t, ast.Name) and t.id in ("int", "float", "str"):
            typ = t.id
        elif isinstance(t, ast.Call) and _dotted(t.func).endswith(("Choice", "ChoiceWithAlias")) and t.args:
            try:
                choices = sorted(map(str, ast.literal_eval(t.args[0])))
                if len(t.args) > 1:  # ChoiceWithAlias(choices, aliases): aliases are accepted too
                    choices = sorted(set(choices) | set(ast.literal_eval(t.args[1]).keys()))
            except ValueError:
                choices = None  # computed at import time (e.g. registry keys): not enforced here
        for o in opts + secondary:
            flags[o] = {"type": "bool" if is_flag else typ, "choices": choices, "nargs": None,
                        "takes_value": not is_flag}
    return {"extracted_with": "static: AST over the @click.option decorators of `serve` in "
                              "tensorrt_llm/commands/serve.py",
            "flags": dict(sorted(flags.items())), "positionals": positionals}


# ============================================================================================ static: TGI
_RUST_INT = {"usize", "u8", "u16", "u32", "u64", "i32", "i64", "isize"}
_RUST_FLOAT = {"f32", "f64"}


def _kebab(ident: str) -> str:
    """clap's default name for a field or ValueEnum variant: `max_batch_size` -> `max-batch-size`,
    `BitsandbytesNf4` -> `bitsandbytes-nf4` (heck kebab case: a break before an upper-case letter that follows a
    lower-case letter or digit)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", ident).replace("_", "-").lower()


def _rust_block(text: str, header: str) -> str:
    """The body of the first `header { ... }` block (braces matched; the launcher has none in strings there)."""
    start = text.index(header)
    i = text.index("{", start)
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j]
    raise ValueError(f"unbalanced braces after {header!r}")


def _clap_attrs(lines: list[str]) -> str:
    return " ".join(a for a in lines if a.startswith(("#[clap(", "#[arg(")))


def _rust_enum_values(text: str, name: str) -> list[str] | None:
    """The values clap accepts for a `#[derive(ValueEnum)] enum name`: variant names in kebab case, or their
    `#[clap(name = "...")]`."""
    m = re.search(rf"enum\s+{name}\s*\{{", text)
    if not m:
        return None
    body = _rust_block(text[m.start():], "{")
    values, attrs = [], []
    for raw in body.splitlines():
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        if line.startswith("#["):
            attrs.append(line)
            continue
        v = re.match(r"([A-Z][A-Za-z0-9]*)\s*,?$", line)
        if v:
            named = re.search(r'name\s*=\s*"([^"]+)"', _clap_attrs(attrs))
            values.append(named.group(1) if named else _kebab(v.group(1)))
        attrs = []
    return values


def static_tgi(source: Path) -> dict:
    """TGI's `text-generation-launcher` flags from `launcher/src/main.rs`: the fields of `struct Args` carrying
    a `#[clap(...)]` with `long` (clap derive: `--field-name`, plus `-x` from the field's first letter where
    the attribute says `short`). Type from the Rust type: integers -> int, f32/f64 -> float, `bool` -> a switch
    (no value), `Option<bool>` -> a value true/false, `Vec<T>` -> one value per occurrence (repeatable),
    `value_delimiter = ','` -> one comma-separated value, a ValueEnum -> its values as choices."""
    path = source if source.is_file() else source / "launcher" / "src" / "main.rs"
    text = path.read_text()
    body = _rust_block(text, "struct Args")
    flags: dict = {}
    env: dict = {}
    defaults: dict = {}
    duplicates: list[str] = []
    pending: list[str] = []
    for raw in body.splitlines():
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        if line.startswith("#["):
            pending.append(line)
            continue
        m = re.match(r"(?:pub\s+)?([a-z_][a-z0-9_]*)\s*:\s*(.+?),?$", line)
        attrs, pending = _clap_attrs(pending), []
        if not m or not re.search(r"\blong\b", attrs):
            continue
        field_name, rtype = m.group(1), m.group(2).replace(" ", "")
        optional = rtype.startswith("Option<")
        inner = rtype[len("Option<"):-1] if optional else rtype
        repeated = inner.startswith("Vec<")
        elem = inner[len("Vec<"):-1] if repeated else inner
        delimited = "value_delimiter" in attrs
        choices = None
        if elem == "bool" and not optional and not repeated:
            typ, takes_value = "bool", False
        elif elem == "bool":
            typ, takes_value, choices = "bool", True, ["false", "true"]
        else:
            takes_value = True
            typ = "int" if elem in _RUST_INT else "float" if elem in _RUST_FLOAT else "str"
            if elem not in _RUST_INT | _RUST_FLOAT | {"String", "PathBuf"}:
                choices = _rust_enum_values(text, elem)
        if delimited:
            typ = f"list[{typ}]"  # one token, comma-separated; not checked element-wise
        spec = {"type": typ, "choices": choices, "nargs": None, "takes_value": takes_value}
        if repeated and not delimited:
            spec["repeatable"] = True
        names = ["--" + _kebab(field_name)]
        if re.search(r"\bshort\b(?!\s*=)", attrs):
            names.append("-" + field_name[0])
        for n in names:
            if n in flags:
                duplicates.append(f"{n} ({field_name})")
                continue
            flags[n] = spec
        if re.search(r"\benv\b(?!\s*=)", attrs):
            env[names[0]] = field_name.upper()
        d = re.search(r'default_value\s*=\s*"([^"]*)"', attrs)
        if d:
            defaults[names[0]] = d.group(1)
    out = {"extracted_with": "static: the #[clap(long ...)] fields of `struct Args` in launcher/src/main.rs "
                             "(scripts/extract_engine_flags.py static_tgi)",
           "flags": dict(sorted(flags.items())), "positionals": [], "env": dict(sorted(env.items())),
           "defaults": dict(sorted(defaults.items()))}
    if duplicates:
        out["short_conflicts"] = duplicates  # a later `short` with a letter already taken: the first keeps it
    return out


STATIC = {"vllm": static_vllm, "sglang": static_sglang, "trtllm": static_trtllm, "tgi": static_tgi}


# ============================================================================================ main
def extract(engine: str, version: str, *, source: Path | None, python: str | None) -> dict:
    result = None
    if python:  # dynamic, in the interpreter that has the engine installed
        code = (f"import json,sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
                f"import extract_engine_flags as m; print('@@JSON@@' + json.dumps(m.DYNAMIC[{engine!r}]()))")
        env = dict(os.environ)
        if source is not None and source.is_dir():
            env["PYTHONPATH"] = f"{source}{os.pathsep}{env.get('PYTHONPATH', '')}"
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            sys.stderr.write(out.stderr[-3000:])
            raise SystemExit(f"dynamic extraction in {python} failed")
        result = json.loads(out.stdout.split("@@JSON@@", 1)[1])
    else:
        try:
            if engine not in DYNAMIC:
                raise ImportError(f"{engine} has no dynamic path")
            result = DYNAMIC[engine]()
        except ImportError as e:
            if source is None:
                raise SystemExit(f"{engine} is not importable ({e}); pass --source with the engine's source tree "
                                 f"at version {version} for the static fallback") from e
            result = STATIC[engine](source)
    found = result.pop("version", None)
    if found and found != "?" and found != version:
        raise SystemExit(f"{engine} here is {found}, not the pinned {version}")
    return {"engine": engine, "version": version, **result}


def dump_schema(doc: dict) -> str:
    """JSON with one line per flag (readable diffs when a version bump changes flags)."""
    lines = ["{"]
    items = list(doc.items())
    for n, (k, v) in enumerate(items):
        comma = "," if n < len(items) - 1 else ""
        if k == "flags":
            lines.append(' "flags": {')
            flags = list(v.items())
            for m, (f, spec) in enumerate(flags):
                lines.append(f"  {json.dumps(f)}: {json.dumps(spec)}" + ("," if m < len(flags) - 1 else ""))
            lines.append(" }" + comma)
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("engine", choices=["vllm", "sglang", "trtllm", "tgi"])
    ap.add_argument("--version", required=True, help="The pinned engine version the schema is for.")
    ap.add_argument("--source", type=Path, help="Engine source tree (or trtllm serve.py) for the static path; "
                                                "with --python, prepended to PYTHONPATH.")
    ap.add_argument("--source-note", default="", help="Where the source came from (recorded in the JSON).")
    ap.add_argument("--python", help="Interpreter that can import the engine (dynamic extraction there).")
    ap.add_argument("--static", action="store_true", help="Force the static path (needs --source).")
    ap.add_argument("--extra", type=Path, help="JSON object merged into the output (e.g. options-file keys).")
    ap.add_argument("--out", type=Path, default=None, help="Output file (default: schemas/<engine>-<version>.json)")
    args = ap.parse_args(argv)
    if args.static:
        if args.source is None:
            ap.error("--static needs --source")
        doc = {"engine": args.engine, "version": args.version, **STATIC[args.engine](args.source)}
    else:
        doc = extract(args.engine, args.version, source=args.source, python=args.python)
    doc["source"] = args.source_note or (str(args.source) if args.source else "installed package")
    if args.extra:
        doc.update(json.loads(args.extra.read_text()))
    order = ["engine", "version", "source", "extracted_with"]
    doc = {**{k: doc[k] for k in order if k in doc}, **{k: v for k, v in doc.items() if k not in order}}
    out = args.out or SCHEMA_DIR / f"{args.engine}-{args.version}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dump_schema(doc))
    print(f"{out}: {len(doc['flags'])} flags ({doc['extracted_with'].split(':')[0]})")


if __name__ == "__main__":
    main()
