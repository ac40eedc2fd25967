"""cellgate's cell analyzer: which names a Python cell defines, which it reads from the cells
above it, and whether it is opaque (its effect on names can't be known without running it).

One process serves every kernel of a gateway and stays warm; it never runs inside a user's
kernel and never runs the code it reads. It speaks JSON lines on stdin and stdout:

    request:  {"id": 7, "source": "x = y + 1"}
    reply:    {"id": 7, "defines": ["x"], "uses": ["y"], "opaque": false, "reasons": [],
               "error": ""}

IPython syntax is first turned into Python the way IPython does it (`%time x = 1`,
`!ls`, `%%capture out`, `x?`), so magics and shell escapes are read as the kernel would run
them. A cell that is not valid Python afterwards defines and reads nothing and says why in
`error`. The rules, and what they miss, are in README.md beside this file.
"""
from __future__ import annotations

import ast
import builtins
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Set

try:
    from IPython.core.inputtransformer2 import TransformerManager
    _TRANSFORMER: Optional[TransformerManager] = TransformerManager()
except ImportError:  # plain Python: magics stay syntax errors
    _TRANSFORMER = None

# Names every kernel has without a cell defining them: reading them is no dependency.
_PREDEFINED = frozenset(dir(builtins)) | {
    "get_ipython", "In", "Out", "exit", "quit", "display", "_", "__", "___", "_i", "_ii",
    "_iii", "_ih", "_oh", "_dh", "__name__", "__doc__", "__builtins__", "__file__",
}
# Calls whose effect on the namespace can't be read from the code.
_OPAQUE_CALLS = {"exec": "calls exec", "eval": "calls eval", "globals": "uses globals()",
                 "locals": "uses locals()", "vars": "uses vars()",
                 "__import__": "calls __import__"}
# Magics that define or delete names in ways the code does not show.
_OPAQUE_MAGICS = {"run", "store", "reset", "reset_selective", "load", "loadpy", "macro",
                  "recall", "rerun", "autocall"}
# Magics whose argument (line) or body (cell) is Python run in the user's namespace.
_CODE_LINE_MAGICS = {"time", "timeit", "prun"}
_CODE_CELL_MAGICS = {"time", "timeit", "prun", "capture"}


@dataclass
class Analysis:
    defines: Set[str] = field(default_factory=set)
    uses: Set[str] = field(default_factory=set)
    reasons: List[str] = field(default_factory=list)
    error: str = ""

    def to_json(self, request_id: object) -> dict:
        return {"id": request_id, "defines": sorted(self.defines),
                "uses": sorted(self.uses - _PREDEFINED), "opaque": bool(self.reasons),
                "reasons": self.reasons, "error": self.error}


# ---- IPython magics ----------------------------------------------------------------------

def _magic_call(node: ast.AST) -> Optional[tuple]:
    """('line'|'cell', name, line_arg, cell_body) for get_ipython().run_*_magic('n', ...)
    with literal arguments, else None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Call)
            and isinstance(node.func.value.func, ast.Name)
            and node.func.value.func.id == "get_ipython"):
        return None
    args = node.args
    if not args or not all(isinstance(a, ast.Constant) and isinstance(a.value, str)
                            for a in args):
        return None
    values = [a.value for a in args]
    if node.func.attr == "run_line_magic" and len(values) == 2:
        return ("line", values[0], values[1], "")
    if node.func.attr == "run_cell_magic" and len(values) == 3:
        return ("cell", values[0], values[1], values[2])
    return None


def _expand_magics(tree: ast.Module, analysis: Analysis) -> ast.Module:
    """Replaces each statement that is a code-running magic with the code it runs, and notes
    the magics that make a cell opaque."""
    def expand(stmts: List[ast.stmt]) -> List[ast.stmt]:
        out: List[ast.stmt] = []
        for stmt in stmts:
            for child_field in ("body", "orelse", "finalbody"):
                if isinstance(getattr(stmt, child_field, None), list):
                    setattr(stmt, child_field, expand(getattr(stmt, child_field)))
            if isinstance(stmt, ast.Try):
                for handler in stmt.handlers:
                    handler.body = expand(handler.body)
            magic = _magic_call(stmt.value) if isinstance(stmt, ast.Expr) else None
            if magic is None:
                out.append(stmt)
                continue
            kind, name, line, body = magic
            code = ""
            if name in _OPAQUE_MAGICS:
                analysis.reasons.append(f"%{name}")
            elif kind == "line" and name in _CODE_LINE_MAGICS:
                code = line
            elif kind == "cell" and name in _CODE_CELL_MAGICS:
                code = body
                if name == "capture":
                    target = next((w for w in line.split() if not w.startswith("-")), "")
                    if target.isidentifier():
                        code = f"{target} = None\n" + code
            elif kind == "line" and name == "xdel":
                code = "\n".join(f"del {w}" for w in line.split() if w.isidentifier())
            if code:
                try:
                    out.extend(expand(ast.parse(_transform(code)).body))
                except SyntaxError:
                    pass  # the kernel will say so; nothing defined
            out.append(stmt)
        return out

    tree.body = expand(tree.body)
    return tree


# A line IPython rewrites: a magic or shell escape (`%time ...`, `!ls`), one assigned
# (`x = !ls`, `y = %who_ls`), or a help request (`np.sum?`, `??obj`).
_IPYTHON_LINE = re.compile(r"^\s*(?:[%!?]|[\w.,\s\[\]()*]+=\s*[%!])|\?\s*$")


def _transform(source: str) -> str:
    """The Python IPython would run for `source`. Plain Python is returned as it is; IPython's
    transformer (a few ms per cell) runs only on the lines that need it, or, for a cell magic,
    the cell is turned into its call directly."""
    if _TRANSFORMER is None:
        return source
    try:
        ast.parse(source)
        return source
    except SyntaxError:
        pass
    try:
        if source.startswith("%%"):
            first, _, body = source.partition("\n")
            name, _, line = first[2:].partition(" ")
            return f"get_ipython().run_cell_magic({name!r}, {line.strip()!r}, {body!r})\n"
        lines = []
        for line in source.splitlines():
            if _IPYTHON_LINE.search(line):
                indent = line[:len(line) - len(line.lstrip())]
                line = indent + _TRANSFORMER.transform_cell(line.lstrip()).rstrip("\n")
            lines.append(line)
        return "\n".join(lines) + "\n"
    except Exception:  # a transformer bug must not take the analyzer down
        return source


# ---- scopes --------------------------------------------------------------------------------

def _target_names(target: ast.AST) -> Iterable[str]:
    """The names an assignment target binds (not those it reads: `a[i] = ...` binds none)."""
    for node in ast.walk(target):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            yield node.id


def _bindings(body: Iterable[ast.AST]) -> Set[str]:
    """Names a scope binds in `body` (not in the scopes nested in it, but for the names of
    nested defs and classes and walrus targets in comprehensions, which bind here)."""
    bound: Set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            for expr in _evaluated_at_definition(node):
                visit(expr)
            return
        if isinstance(node, ast.Lambda):
            for expr in node.args.defaults + [d for d in node.args.kw_defaults if d]:
                visit(expr)
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            # Only walrus targets escape a comprehension; its iteration variables don't.
            for sub in ast.walk(node):
                if isinstance(sub, ast.NamedExpr):
                    bound.add(sub.target.id)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    for node in body:
        visit(node)
    return bound


def _evaluated_at_definition(node: ast.AST) -> List[ast.AST]:
    """What a def or class statement evaluates where it stands: decorators, defaults,
    annotations (without `from __future__ import annotations`), bases and keywords."""
    exprs: List[ast.AST] = list(node.decorator_list)
    if isinstance(node, ast.ClassDef):
        return exprs + list(node.bases) + [k.value for k in node.keywords]
    args = node.args
    exprs += args.defaults + [d for d in args.kw_defaults if d]
    for arg in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
        if arg is not None and arg.annotation is not None:
            exprs.append(arg.annotation)
    if node.returns is not None:
        exprs.append(node.returns)
    return exprs


def _declared(body: Iterable[ast.AST], kind: type) -> Set[str]:
    names: Set[str] = set()
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, kind):
                names.update(node.names)
    return names


class _CellReader:
    """Walks a cell in execution order. `bound` holds the names the cell has surely bound so
    far; a module-level read of anything else is a use. Reads inside function bodies happen
    when the function is called: they are uses unless the cell binds the name anywhere."""

    def __init__(self, analysis: Analysis, cell_bindings: Set[str]) -> None:
        self.analysis = analysis
        self.cell_bindings = cell_bindings
        self.deferred_reads: Set[str] = set()

    # Module level, in order --------------------------------------------------------------

    def block(self, stmts: Iterable[ast.stmt], bound: Set[str]) -> Set[str]:
        for stmt in stmts:
            bound = self.statement(stmt, bound)
        return bound

    def statement(self, stmt: ast.stmt, bound: Set[str]) -> Set[str]:
        a = self.analysis
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for expr in _evaluated_at_definition(stmt):
                self.expr(expr, bound)
            self.function(stmt, enclosing=set())
            a.defines.add(stmt.name)
            return bound | {stmt.name}
        if isinstance(stmt, ast.ClassDef):
            for expr in _evaluated_at_definition(stmt):
                self.expr(expr, bound)
            self.class_body(stmt, bound, enclosing=set())
            a.defines.add(stmt.name)
            return bound | {stmt.name}
        if isinstance(stmt, ast.Assign):
            self.expr(stmt.value, bound)
            names = {n for t in stmt.targets for n in _target_names(t)}
            for target in stmt.targets:
                self.target_reads(target, bound)
            a.defines |= names
            return bound | names
        if isinstance(stmt, ast.AugAssign):
            self.expr(stmt.value, bound)
            self.target_reads(stmt.target, bound)
            if isinstance(stmt.target, ast.Name):
                self.read(stmt.target.id, bound)  # x += 1 reads x first
                a.defines.add(stmt.target.id)
                return bound | {stmt.target.id}
            return bound
        if isinstance(stmt, ast.AnnAssign):
            self.expr(stmt.annotation, bound)
            if stmt.value is None:
                return bound  # `x: int` declares, binds nothing
            self.expr(stmt.value, bound)
            self.target_reads(stmt.target, bound)
            if isinstance(stmt.target, ast.Name):
                a.defines.add(stmt.target.id)
                return bound | {stmt.target.id}
            return bound
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names = set()
            for alias in stmt.names:
                if alias.name == "*":
                    a.reasons.append(f"star import from {stmt.module or '.'}")
                else:
                    names.add(alias.asname or alias.name.split(".")[0])
            a.defines |= names
            return bound | names
        if isinstance(stmt, ast.Delete):
            for target in stmt.targets:
                self.target_reads(target, bound)
                if isinstance(target, ast.Name):
                    self.read(target.id, bound)  # del needs the name to exist
                    a.defines.add(target.id)
                    bound = bound - {target.id}
            return bound
        if isinstance(stmt, (ast.Global, ast.Nonlocal)):
            return bound
        if isinstance(stmt, (ast.For, ast.AsyncFor)):
            self.expr(stmt.iter, bound)
            names = set(_target_names(stmt.target))
            a.defines |= names
            self.target_reads(stmt.target, bound)
            self.block(stmt.body, bound | names)
            self.block(stmt.orelse, bound)
            a.defines |= _bindings(stmt.body) | _bindings(stmt.orelse)
            return bound  # the loop may not run: nothing in it is surely bound
        if isinstance(stmt, ast.While):
            self.expr(stmt.test, bound)
            self.block(stmt.body, bound)
            self.block(stmt.orelse, bound)
            a.defines |= _bindings(stmt.body) | _bindings(stmt.orelse)
            return bound
        if isinstance(stmt, ast.If):
            self.expr(stmt.test, bound)
            after_body = self.block(stmt.body, bound)
            after_else = self.block(stmt.orelse, bound)
            a.defines |= _bindings(stmt.body) | _bindings(stmt.orelse)
            return after_body & after_else  # bound on both paths
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            for item in stmt.items:
                self.expr(item.context_expr, bound)
                if item.optional_vars is not None:
                    names = set(_target_names(item.optional_vars))
                    self.target_reads(item.optional_vars, bound)
                    a.defines |= names
                    bound = bound | names
            return self.block(stmt.body, bound)
        if isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":
            self.block(stmt.body, bound)
            for handler in stmt.handlers:
                if handler.type is not None:
                    self.expr(handler.type, bound)
                self.block(handler.body, bound | ({handler.name} if handler.name else set()))
            self.block(stmt.orelse, bound)
            after = self.block(stmt.finalbody, bound)
            a.defines |= _bindings([stmt])
            return after
        if isinstance(stmt, ast.Match):
            self.expr(stmt.subject, bound)
            for case in stmt.cases:
                captured = _bindings([case.pattern])
                for node in ast.walk(case.pattern):
                    if isinstance(node, ast.MatchValue):
                        self.expr(node.value, bound)
                    elif isinstance(node, ast.MatchClass):
                        self.expr(node.cls, bound)
                if case.guard is not None:
                    self.expr(case.guard, bound | captured)
                self.block(case.body, bound | captured)
            a.defines |= _bindings([stmt])
            return bound
        # Expr, Return, Raise, Assert, Pass, Break, Continue, ...
        for child in ast.iter_child_nodes(stmt):
            if isinstance(child, ast.expr):
                self.expr(child, bound)
        return bound

    def target_reads(self, target: ast.AST, bound: Set[str]) -> None:
        """Reads inside an assignment target: `a[i] = 1` reads a and i; `a.b = 1` reads a."""
        if isinstance(target, (ast.Subscript, ast.Attribute)):
            self.expr(target.value, bound)
            if isinstance(target, ast.Subscript):
                self.expr(target.slice, bound)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self.target_reads(elt, bound)
        elif isinstance(target, ast.Starred):
            self.target_reads(target.value, bound)

    def read(self, name: str, bound: Set[str]) -> None:
        if name not in bound:
            self.analysis.uses.add(name)

    def expr(self, node: ast.AST, bound: Set[str]) -> None:
        """Reads of an expression evaluated now at module level (walrus binds as it goes)."""
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                self.read(node.id, bound)
            return
        if isinstance(node, ast.NamedExpr):
            self.expr(node.value, bound)
            self.analysis.defines.add(node.target.id)
            bound.add(node.target.id)
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in _OPAQUE_CALLS and node.func.id not in bound:
                self.analysis.reasons.append(_OPAQUE_CALLS[node.func.id])
        if isinstance(node, ast.Lambda):
            for expr in node.args.defaults + [d for d in node.args.kw_defaults if d]:
                self.expr(expr, bound)
            self.function(node, enclosing=set())
            return
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            self.comprehension(node, bound)
            return
        for child in ast.iter_child_nodes(node):
            self.expr(child, bound)

    def comprehension(self, node: ast.AST, bound: Set[str]) -> None:
        """Evaluated now, in a scope of its own: its iteration variables are its own, a walrus
        binds in the enclosing scope, the first iterable is read outside."""
        local: Set[str] = set()
        scope = set(bound)  # what is visible inside; a walrus adds to it as it binds
        for gen in node.generators:
            self.expr(gen.iter, scope)
            targets = set(_target_names(gen.target))
            local |= targets
            scope |= targets
            for cond in gen.ifs:
                self.expr(cond, scope)
        parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        for part in parts:
            self.expr(part, scope)
        bound |= scope - local  # walrus targets

    # Nested scopes: run later ---------------------------------------------------------------

    def function(self, node: ast.AST, enclosing: Set[str]) -> None:
        body = node.body if isinstance(node.body, list) else [node.body]
        args = node.args
        params = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
        params |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
        declared_global = _declared(body, ast.Global)
        declared_nonlocal = _declared(body, ast.Nonlocal)
        local = (params | _bindings(body)) - declared_global - declared_nonlocal
        # Names it declares global and binds are the module's.
        self.analysis.defines |= declared_global & _bindings(body)
        self.scope_reads(body, local | enclosing | declared_nonlocal, declared_global)

    def class_body(self, node: ast.ClassDef, bound: Set[str], enclosing: Set[str]) -> None:
        # A class body runs now, in its own namespace; its methods run later.
        local: Set[str] = set()
        for stmt in node.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for expr in _evaluated_at_definition(stmt):
                    self.expr(expr, bound | local)
                self.function(stmt, enclosing)
                local.add(stmt.name)
            else:
                self.expr_in_class(stmt, bound | local)
                local |= _bindings([stmt])

    def expr_in_class(self, stmt: ast.stmt, visible: Set[str]) -> None:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                self.read(node.id, visible)

    def scope_reads(self, body: List[ast.AST], local: Set[str], declared_global: Set[str]) -> None:
        """Reads in a function body, which happen when it is called."""
        def visit(node: ast.AST) -> None:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if not isinstance(node, ast.Lambda):
                    for expr in _evaluated_at_definition(node):
                        visit(expr)
                self.function(node, enclosing=local - declared_global)
                return
            if isinstance(node, ast.ClassDef):
                for expr in _evaluated_at_definition(node):
                    visit(expr)
                for stmt in node.body:
                    visit(stmt)
                return
            if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                comp_local = {n for g in node.generators for n in _target_names(g.target)}
                for sub in ast.walk(node):
                    if (isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load)
                            and sub.id not in comp_local):
                        self.deferred(sub.id, local)
                return
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                self.deferred(node.id, local)
                return
            if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
                self.deferred(node.target.id, local)  # x += 1 reads x
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in _OPAQUE_CALLS and node.func.id not in local:
                    self.analysis.reasons.append(_OPAQUE_CALLS[node.func.id])
            for child in ast.iter_child_nodes(node):
                visit(child)

        for stmt in body:
            visit(stmt)

    def deferred(self, name: str, local: Set[str]) -> None:
        if name not in local and name not in self.cell_bindings:
            self.analysis.uses.add(name)


def analyze(source: str) -> Analysis:
    analysis = Analysis()
    python = _transform(source)
    try:
        tree = ast.parse(python)
    except SyntaxError as e:
        analysis.error = f"syntax error at line {e.lineno}: {e.msg}"
        return analysis
    tree = _expand_magics(tree, analysis)
    reader = _CellReader(analysis, cell_bindings=_bindings(tree.body))
    reader.block(tree.body, set())
    # Each reason once, in the order met.
    analysis.reasons = list(dict.fromkeys(analysis.reasons))
    return analysis


def serve(stdin=sys.stdin, stdout=sys.stdout) -> None:
    for line in stdin:
        if not line.strip():
            continue
        request_id: object = None
        try:
            request = json.loads(line)
            request_id = request.get("id")
            reply = analyze(str(request.get("source", ""))).to_json(request_id)
        except Exception as e:  # a bad request or an analyzer bug: answer, keep serving
            reply = {"id": request_id, "defines": [], "uses": [], "opaque": True,
                     "reasons": ["the analyzer failed"], "error": f"{type(e).__name__}: {e}"}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


if __name__ == "__main__":
    serve()
