"""The expression language: parsed with :mod:`ast`, whitelisted, compiled to closures.

A rule's ``when`` is a Python-syntax expression, but only a small, typed
subset is accepted (see ``docs/rules.md``): ``and``/``or``/``not``,
comparisons (chained, and ``in`` / ``not in`` a list literal), ``+ - * /``,
unary minus, number/string/bool literals, names (inputs and other rules) and
calls of registered UDFs with positional arguments. Every other construct —
attribute access, subscripts, lambdas, comprehensions, f-strings, keyword
arguments, ``is``, ``None`` ... — is refused with the construct named.

The checked tree is compiled once, at load, into nested Python closures over
an ``env`` dict (input and rule name -> value): nothing is ever passed to
``eval``/``exec``, and evaluating a typical rule costs a few hundred
nanoseconds. Types are checked at the same time, so a compiled expression can
only fail at run time inside a UDF.

``None`` (a missing optional value, e.g. ``score`` without a model, or a
division by zero) propagates through arithmetic and UDF calls; every
comparison with ``None`` is false (``!=`` and ``not in`` too); in a boolean
context ``None`` counts as false. The checker knows which values may be
``None`` and only the compiled code for those pays for a check.

>>> from rtml_decision.rules.types import NUMBER
>>> from rtml_decision.rules.udfs import default_udfs
>>> c = ExpressionCompiler({"amount": NUMBER, "score": NUMBER.as_optional()}, default_udfs())
>>> e = c.compile("amount > 100 and score >= 0.5")
>>> e.fn({"amount": 250.0, "score": 0.7}), e.fn({"amount": 250.0, "score": None})
(True, False)
>>> sorted(e.refs)
['amount', 'score']
"""

from __future__ import annotations

import ast
import difflib
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rtml_decision.rules.types import BOOL, NUMBER, STR, ExpressionError, Type
from rtml_decision.rules.udfs import UdfRegistry

Env = dict[str, Any]
Fn = Callable[[Env], Any]

#: Longest accepted expression, and deepest nesting: keeps parsing and compiling bounded.
MAX_LENGTH = 4000
MAX_DEPTH = 40

_FORBIDDEN = {
    ast.Attribute: "attribute access (x.attr)",
    ast.Subscript: "subscripts (x[i])",
    ast.Slice: "slices",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions",
    ast.JoinedStr: "f-strings",
    ast.FormattedValue: "f-strings",
    ast.IfExp: "conditional expressions (a if c else b)",
    ast.NamedExpr: "assignment expressions (:=)",
    ast.Starred: "starred arguments (*x)",
    ast.Dict: "dict literals",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}

_BINOPS: dict[type[ast.operator], str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
                                          ast.Div: "/"}
_CMP_SYMBOL: dict[type[ast.cmpop], str] = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
    ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
}
_CMP_FUNC: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}

# Specialised closures for the commonest shape, ``x <op> constant``: one Python frame,
# the comparison inlined. ``_X_CONST`` for a value that cannot be None, ``_OPT_X_CONST``
# for one that can (None compares false).
_X_CONST: dict[type[ast.cmpop], Callable[[Fn, Any], Fn]] = {
    ast.Eq: lambda f, c: lambda env: f(env) == c,
    ast.NotEq: lambda f, c: lambda env: f(env) != c,
    ast.Lt: lambda f, c: lambda env: f(env) < c,
    ast.LtE: lambda f, c: lambda env: f(env) <= c,
    ast.Gt: lambda f, c: lambda env: f(env) > c,
    ast.GtE: lambda f, c: lambda env: f(env) >= c,
    ast.In: lambda f, c: lambda env: f(env) in c,
    ast.NotIn: lambda f, c: lambda env: f(env) not in c,
}
_NAME_CONST: dict[type[ast.cmpop], Callable[[str, Any], Fn]] = {
    ast.Eq: lambda n, c: lambda env: env[n] == c,
    ast.NotEq: lambda n, c: lambda env: env[n] != c,
    ast.Lt: lambda n, c: lambda env: env[n] < c,
    ast.LtE: lambda n, c: lambda env: env[n] <= c,
    ast.Gt: lambda n, c: lambda env: env[n] > c,
    ast.GtE: lambda n, c: lambda env: env[n] >= c,
    ast.In: lambda n, c: lambda env: env[n] in c,
    ast.NotIn: lambda n, c: lambda env: env[n] not in c,
}
_OPT_X_CONST: dict[type[ast.cmpop], Callable[[Fn, Any], Fn]] = {
    ast.Eq: lambda f, c: lambda env: (v := f(env)) is not None and v == c,
    ast.NotEq: lambda f, c: lambda env: (v := f(env)) is not None and v != c,
    ast.Lt: lambda f, c: lambda env: (v := f(env)) is not None and v < c,
    ast.LtE: lambda f, c: lambda env: (v := f(env)) is not None and v <= c,
    ast.Gt: lambda f, c: lambda env: (v := f(env)) is not None and v > c,
    ast.GtE: lambda f, c: lambda env: (v := f(env)) is not None and v >= c,
    ast.In: lambda f, c: lambda env: (v := f(env)) is not None and v in c,
    ast.NotIn: lambda f, c: lambda env: (v := f(env)) is not None and v not in c,
}


@dataclass(slots=True)
class Node:
    """A compiled sub-expression: its closure, static type, and constant value if folded."""

    fn: Fn
    type: Type
    const: bool = False
    value: Any = None
    #: The input/rule name when the node is a bare name (enables the ``env[n]`` fast paths).
    name: str | None = None


@dataclass(slots=True)
class Compiled:
    """A compiled expression: ``fn(env)`` evaluates it; ``refs`` are the names it reads."""

    text: str
    fn: Fn
    type: Type
    refs: frozenset[str]
    udfs: frozenset[str] = field(default_factory=frozenset)


def _const(value: Any, type_: Type) -> Node:
    return Node(lambda env: value, type_, const=True, value=value)


def _describe(node: ast.AST) -> str:
    if type(node) in _FORBIDDEN:
        return _FORBIDDEN[type(node)]
    if isinstance(node, ast.BinOp):
        return f"operator {type(node.op).__name__}"
    return type(node).__name__


class ExpressionCompiler:
    """Checks and compiles expressions over known names, UDFs and named lists.

    ``names`` maps every readable name (inputs and rule names) to its type;
    ``lists`` maps list names to their values (file lists over registry ones);
    ``unreadable`` names the request's values a rule may not read, with why
    (timestamps); ``scope`` says where the names come from, for an unknown one.
    """

    def __init__(self, names: Mapping[str, Type], udfs: UdfRegistry,
                 lists: Mapping[str, frozenset[object]] | None = None,
                 unreadable: Mapping[str, str] | None = None,
                 scope: str | None = None) -> None:
        self.names = names
        self.udfs = udfs
        self.unreadable = dict(unreadable or {})
        self.scope = scope
        self.lists = dict(udfs.lists) if lists is None else dict(lists)
        self._list_types = {name: _element_type(values) for name, values in self.lists.items()}
        self._refs: set[str] = set()
        self._called: set[str] = set()

    def compile(self, text: str) -> Compiled:
        """Parse, check and compile ``text``; :class:`ExpressionError` on any problem."""
        if len(text) > MAX_LENGTH:
            raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            col = (exc.offset - 1) if exc.offset else None
            raise ExpressionError(f"syntax error: {exc.msg}", col) from None
        except (ValueError, RecursionError, MemoryError) as exc:
            raise ExpressionError(f"cannot parse: {exc}") from None
        self._refs, self._called = set(), set()
        node = self._visit(tree.body, 0)
        return Compiled(text, node.fn, node.type, frozenset(self._refs),
                        frozenset(self._called))

    # -- dispatch ---------------------------------------------------------------------------

    def _visit(self, node: ast.expr, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise ExpressionError(f"expression nested deeper than {MAX_DEPTH} levels")
        depth += 1
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.BoolOp):
            return self._boolop(node, depth)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node, depth)
        if isinstance(node, ast.BinOp):
            return self._binop(node, depth)
        if isinstance(node, ast.Compare):
            return self._compare(node, depth)
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            raise self._error(node, "list literals are only allowed after `in` / `not in`")
        raise self._error(node, f"{_describe(node)} is not allowed")

    @staticmethod
    def _error(node: ast.AST, message: str) -> ExpressionError:
        return ExpressionError(message, getattr(node, "col_offset", None))

    # -- leaves -----------------------------------------------------------------------------

    def _constant(self, node: ast.Constant) -> Node:
        value = node.value
        if isinstance(value, bool):
            return _const(value, BOOL)
        if isinstance(value, int | float):
            return _const(value, NUMBER)
        if isinstance(value, str):
            return _const(value, STR)
        if value is None:
            raise self._error(node, "None is not allowed; test presence with has(x)")
        raise self._error(node, f"{type(value).__name__} literals are not allowed")

    def _name(self, node: ast.Name) -> Node:
        name = node.id
        if name.startswith("_"):
            raise self._error(node, f"names starting with _ are not allowed ({name!r})")
        type_ = self.names.get(name)
        if type_ is None:
            if name in self.unreadable:
                raise self._error(node, self.unreadable[name])
            if self.udfs.get(name) is not None:
                raise self._error(node, f"{name!r} is a function; call it: {name}(...)")
            if name in self.lists:
                raise self._error(node, f'{name!r} is a list; use in_list("{name}", x)')
            close = difflib.get_close_matches(name, list(self.names), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            scope = f" (neither an input of {self.scope} nor a rule)" if self.scope else ""
            raise self._error(node, f"unknown name {name!r}{hint}{scope}")
        self._refs.add(name)
        return Node(operator.itemgetter(name), type_, name=name)

    # -- operators --------------------------------------------------------------------------

    def _boolop(self, node: ast.BoolOp, depth: int) -> Node:
        parts = [self._visit(v, depth) for v in node.values]
        for part, value in zip(parts, node.values, strict=True):
            if part.type.kind != "bool":
                raise self._error(value, f"`{_keyword(node)}` needs booleans, got {part.type}")
        optional = any(p.type.optional for p in parts)
        fns = [p.fn for p in parts]
        fn: Fn
        if isinstance(node.op, ast.And):
            if len(fns) == 2:
                a, b = fns
                fn = lambda env: a(env) and b(env)  # noqa: E731
            else:
                fn = lambda env: all(f(env) for f in fns)  # noqa: E731
        else:
            if len(fns) == 2:
                a, b = fns
                fn = lambda env: a(env) or b(env)  # noqa: E731
            else:
                fn = lambda env: any(f(env) for f in fns)  # noqa: E731
        return self._fold(Node(fn, BOOL.as_optional(optional)), parts)

    def _unary(self, node: ast.UnaryOp, depth: int) -> Node:
        operand = self._visit(node.operand, depth)
        f = operand.fn
        if isinstance(node.op, ast.Not):
            if operand.type.kind != "bool":
                raise self._error(node, f"`not` needs a boolean, got {operand.type}")
            return self._fold(Node(lambda env: not f(env), BOOL), [operand])
        if isinstance(node.op, ast.USub):
            if operand.type.kind != "number":
                raise self._error(node, f"unary minus needs a number, got {operand.type}")
            if operand.type.optional:
                return Node(lambda env: None if (v := f(env)) is None else -v, operand.type)
            return self._fold(Node(lambda env: -f(env), NUMBER), [operand])
        raise self._error(node, f"unary operator {type(node.op).__name__} is not allowed")

    def _binop(self, node: ast.BinOp, depth: int) -> Node:
        symbol = _BINOPS.get(type(node.op))
        if symbol is None:
            raise self._error(node, f"operator {type(node.op).__name__} is not allowed "
                                    "(only + - * /)")
        left, right = self._visit(node.left, depth), self._visit(node.right, depth)
        for side, sub in ((left, node.left), (right, node.right)):
            if side.type.kind != "number":
                raise self._error(sub, f"`{symbol}` needs numbers, got {side.type}")
        a, b = left.fn, right.fn
        optional = left.type.optional or right.type.optional
        fn: Fn
        if symbol == "/":
            # Division by zero is "no value" (None), like a missing input.
            if right.const and right.value != 0 and not optional:
                c = right.value
                fn = lambda env: a(env) / c  # noqa: E731
            else:
                optional = True

                def fn(env: Env) -> Any:
                    x, y = a(env), b(env)
                    if x is None or not y:
                        return None
                    return x / y
        else:
            op = {"+": operator.add, "-": operator.sub, "*": operator.mul}[symbol]
            if optional:

                def fn(env: Env) -> Any:
                    x, y = a(env), b(env)
                    return None if x is None or y is None else op(x, y)
            else:
                fn = lambda env: op(a(env), b(env))  # noqa: E731
        return self._fold(Node(fn, NUMBER.as_optional(optional)), [left, right])

    def _compare(self, node: ast.Compare, depth: int) -> Node:
        operands = [self._visit(node.left, depth)]
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            symbol = _CMP_SYMBOL.get(type(op), type(op).__name__)
            if isinstance(op, ast.Is | ast.IsNot):
                raise self._error(node, f"`{symbol}` is not allowed; use == or has(x)")
            left = operands[-1]
            if isinstance(op, ast.In | ast.NotIn):
                right = self._literal_set(comparator, left, symbol)
            else:
                right = self._visit(comparator, depth)
                self._check_comparable(comparator, left, right, symbol)
            operands.append(right)
        if len(node.ops) == 1:
            fn = self._compare_one(type(node.ops[0]), operands[0], operands[1])
        else:
            fn = self._compare_chain([type(op) for op in node.ops], operands)
        return self._fold(Node(fn, BOOL), operands)

    def _check_comparable(self, node: ast.AST, left_node: Node, right_node: Node,
                          symbol: str) -> None:
        left, right = left_node.type, right_node.type
        if left.kind != right.kind:
            raise self._error(node, f"cannot compare {left} {symbol} {right}"
                                    f"{_naming(left_node, right_node)}")
        if symbol not in ("==", "!=") and left.kind != "number":
            raise self._error(node, f"`{symbol}` needs numbers, got {left}"
                                    f"{_naming(left_node, right_node)}")
        for value, other in ((left_node, right_node), (right_node, left_node)):
            if value.type.categories is not None and other.const:
                self._check_category(node, value, other.value)

    def _check_category(self, node: ast.AST, value: Node, literal: object,
                        where: str = "") -> None:
        """A literal compared with a categorical field must be one of its categories."""
        categories = value.type.categories
        if categories is not None and literal not in categories:
            what = value.name or "the value"
            verb = ", which is" if where else " is"
            raise self._error(node, f"{where}{literal!r}{verb} not a category of {what}; "
                                    f"allowed: {', '.join(categories)}")

    def _literal_set(self, node: ast.expr, left_node: Node, symbol: str) -> Node:
        left = left_node.type
        if not isinstance(node, ast.List | ast.Tuple | ast.Set):
            raise self._error(node, f"`{symbol}` needs a list literal like [1, 2] on its right;"
                                    ' for named lists use in_list("name", x)')
        values = []
        for element in node.elts:
            item = self._visit(element, MAX_DEPTH - 1)
            if not item.const:
                raise self._error(element, f"`{symbol}` list elements must be literals")
            if item.type.kind != left.kind:
                raise self._error(element, f"`{symbol}` list holds {item.type}, "
                                           f"the value is {left}")
            self._check_category(element, left_node, item.value)
            values.append(item.value)
        return _const(frozenset(values), Type("list"))

    @staticmethod
    def _compare_one(op: type[ast.cmpop], left: Node, right: Node) -> Fn:
        if right.const:
            c = right.value
            if left.type.optional:
                return _OPT_X_CONST[op](left.fn, c)
            if left.name is not None:
                return _NAME_CONST[op](left.name, c)
            return _X_CONST[op](left.fn, c)
        func = _CMP_FUNC[op]
        a, b = left.fn, right.fn
        if left.type.optional or right.type.optional:

            def compare(env: Env) -> bool:
                x, y = a(env), b(env)
                return x is not None and y is not None and func(x, y)

            return compare
        return lambda env: func(a(env), b(env))

    @staticmethod
    def _compare_chain(ops: list[type[ast.cmpop]], operands: list[Node]) -> Fn:
        steps: list[tuple[Callable[[Any, Any], bool], Fn]] = []
        for op, operand in zip(ops, operands[1:], strict=True):
            if op in (ast.In, ast.NotIn):
                func: Callable[[Any, Any], bool] = (
                    (lambda x, s: x in s) if op is ast.In else (lambda x, s: x not in s))
                steps.append((func, operand.fn))
            else:
                steps.append((_CMP_FUNC[op], operand.fn))
        first = operands[0].fn

        def chain(env: Env) -> bool:
            x = first(env)
            for func, fn in steps:
                y = fn(env)
                if x is None or y is None or not func(x, y):
                    return False
                x = y
            return True

        return chain

    # -- calls ------------------------------------------------------------------------------

    def _call(self, node: ast.Call, depth: int) -> Node:
        if not isinstance(node.func, ast.Name):
            raise self._error(node, f"only registered functions can be called, not "
                                    f"{_describe(node.func)}")
        name = node.func.id
        udf = self.udfs.get(name)
        if udf is None:
            close = difflib.get_close_matches(name, self.udfs.names, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else \
                f"known: {', '.join(self.udfs.names)}"
            raise self._error(node, f"unknown function {name!r}; {hint}")
        if node.keywords:
            raise self._error(node, f"keyword arguments are not allowed ({name}(...))")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self._error(arg, "starred arguments (*x) are not allowed")
        n = len(node.args)
        if (n < udf.arity) if udf.variadic else (n != udf.arity):
            want = f"at least {udf.arity}" if udf.variadic else str(udf.arity)
            raise self._error(node, f"{name}() takes {want} argument(s), got {n}: "
                                    f"{udf.signature()}")
        params = [udf.arg_types[min(i, udf.arity - 1)] for i in range(n)]
        args: list[Node] = []
        elem_type: Type | None = None
        list_values: frozenset[object] = frozenset()
        for i, (param, arg) in enumerate(zip(params, node.args, strict=True)):
            where = f"argument {i + 1} of {name}()"
            if param.kind == "list":
                list_name = arg.value if isinstance(arg, ast.Constant) else None
                if not isinstance(list_name, str):
                    raise self._error(arg, f"{where} must be a list name in quotes")
                if list_name not in self.lists:
                    known = ", ".join(sorted(self.lists)) or "none"
                    raise self._error(arg, f"{where}: unknown list {list_name!r}; known: {known}")
                elem_type = self._list_types[list_name]
                list_values = self.lists[list_name]
                args.append(_const(self.lists[list_name], param))
                continue
            value = self._visit(arg, depth)
            if param.kind == "elem":
                want_kind = elem_type.kind if elem_type is not None else value.type.kind
                if value.type.kind != want_kind:
                    raise self._error(arg, f"{where} is {value.type} but the list holds "
                                           f"{want_kind} values (quote ids in lists: '123')")
                for item in sorted(list_values, key=str):
                    self._check_category(arg, value, item, f"{where}: the list holds ")
            elif param.kind == "any":
                if value.type.kind == "list":
                    raise self._error(arg, f"{where} cannot be a list")
            elif value.type.kind != param.kind:
                raise self._error(arg, f"{where} must be {param.kind}, got {value.type}: "
                                       f"{udf.signature()}")
            args.append(value)
        self._called.add(name)
        func = udf.func
        fns = [a.fn for a in args]
        # A None argument for a non-optional parameter: the call is None, func is not called.
        checks = [i for i, (p, a) in enumerate(zip(params, args, strict=True))
                  if a.type.optional and not p.optional]
        optional = bool(checks) or udf.return_type.optional
        fn: Fn
        if checks:

            def fn(env: Env) -> Any:
                values = [f(env) for f in fns]
                for i in checks:
                    if values[i] is None:
                        return None
                return func(*values)
        elif len(fns) == 1:
            (a,) = fns
            fn = lambda env: func(a(env))  # noqa: E731
        elif len(fns) == 2:
            a, b = fns
            if args[0].const:
                c0 = args[0].value
                fn = lambda env: func(c0, b(env))  # noqa: E731
            else:
                fn = lambda env: func(a(env), b(env))  # noqa: E731
        else:
            fn = lambda env: func(*[f(env) for f in fns])  # noqa: E731
        # UDFs are never constant-folded: one may read a clock or a store.
        return Node(fn, udf.return_type.as_optional(optional))

    # -- folding ----------------------------------------------------------------------------

    @staticmethod
    def _fold(node: Node, children: list[Node]) -> Node:
        """Evaluate a node whose children are all constants once, now."""
        if not all(c.const for c in children):
            return node
        try:
            value = node.fn({})
        except Exception as exc:  # e.g. an overflow on literals
            raise ExpressionError(f"constant expression fails: {exc}") from None
        type_ = node.type.as_optional(value is None)
        return _const(value, type_)


def _naming(*nodes: Node) -> str:
    """`` (channel is str)``: the names among the operands, with their types."""
    named = [f"{n.name} is {n.type}" for n in nodes if n.name is not None]
    return f" ({', '.join(named)})" if named else ""


def _keyword(node: ast.BoolOp) -> str:
    return "and" if isinstance(node.op, ast.And) else "or"


def _element_type(values: frozenset[object]) -> Type | None:
    """The kind of a named list's values; None for an empty list (matches anything)."""
    kinds = {"bool" if isinstance(v, bool) else "number" if isinstance(v, int | float)
             else "str" if isinstance(v, str) else type(v).__name__ for v in values}
    if not kinds:
        return None
    if len(kinds) > 1:
        raise ExpressionError(f"a list mixes {' and '.join(sorted(kinds))} values")
    return Type(kinds.pop())
