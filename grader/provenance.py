"""Static provenance flags: what a submission's source reaches for that honest code for
this exercise never needs (frame and traceback internals, gc, ctypes, dynamic imports,
process starts, signals, sockets, FIFOs, rebinding builtins...). The grading process reads
the kept module before anything of it runs; each flag names the line. A flag is for a
person to read and never changes a score; a module that does not parse raises none (its
import error says why)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

KIND = "source"
MAX_FLAGS = 20
MAX_SOURCE = 32 << 20
"""bytes of a kept module scanned: a notebook's 1 MB of code with its wrappers stays below"""

# Attributes honest code for this exercise never reads, wherever they are read from.
ATTRIBUTES = {
    "tb_frame": "reads a traceback's frame (tb_frame)",
    "tb_next": "walks a traceback (tb_next)",
    "f_back": "reads a frame's caller (f_back)",
    "f_locals": "reads a frame's local variables (f_locals)",
    "f_globals": "reads a frame's globals (f_globals)",
    "f_builtins": "reads a frame's builtins (f_builtins)",
    "f_code": "reads a frame's code (f_code)",
    "f_trace": "sets or reads a frame's tracer (f_trace)",
    "gi_frame": "reads a generator's frame (gi_frame)",
    "cr_frame": "reads a coroutine's frame (cr_frame)",
    "ag_frame": "reads an async generator's frame (ag_frame)",
    "__traceback__": "reads an exception's traceback (__traceback__)",
    "__subclasses__": "lists a class's subclasses (__subclasses__)",
    "__globals__": "reads a function's globals (__globals__)",
    "__code__": "reads or replaces a function's code (__code__)",
    "__closure__": "reads a function's closure cells (__closure__)",
    "__builtins__": "reaches __builtins__",
    "ptrace": "calls ptrace",
    "prctl": "calls prctl",
    "process_vm_readv": "reads another process's memory (process_vm_readv)",
    "process_vm_writev": "writes another process's memory (process_vm_writev)",
}

# Modules whose mere import is the flag.
MODULES = {
    "gc": "imports gc (the interpreter's object lists)",
    "ctypes": "imports ctypes (raw memory and C calls)",
    "_ctypes": "imports _ctypes (raw memory and C calls)",
    "_posixsubprocess": "imports _posixsubprocess (starts processes unaudited)",
    "subprocess": "imports subprocess (child processes)",
    "multiprocessing": "imports multiprocessing (child processes)",
    "pty": "imports pty (child processes on a terminal)",
    "signal": "imports signal",
    "socket": "imports socket (the network)",
    "_socket": "imports _socket (the network)",
    "imp": "imports imp (dynamic imports)",
    "importlib.util": "imports importlib.util (dynamic imports)",
    "importlib.machinery": "imports importlib.machinery (dynamic imports)",
    "builtins": "imports builtins (the interpreter's own functions)",
    "posix": "imports posix (os without its audit events)",
    "_thread": "imports _thread",
}

# Module attributes, however the module was imported (import x as y, from x import a).
QUALIFIED = {
    "sys._getframe": "calls sys._getframe (the caller's frames)",
    "sys._current_frames": "calls sys._current_frames (every thread's frames)",
    "sys.modules": "reaches sys.modules (every loaded module)",
    "sys.settrace": "installs a tracer (sys.settrace)",
    "sys.setprofile": "installs a profiler (sys.setprofile)",
    "sys.addaudithook": "installs an audit hook",
    "sys.meta_path": "changes how modules are found (sys.meta_path)",
    "sys.path_hooks": "changes how modules are found (sys.path_hooks)",
    "inspect.currentframe": "calls inspect.currentframe",
    "inspect.stack": "calls inspect.stack (the caller's frames)",
    "inspect.trace": "calls inspect.trace (a traceback's frames)",
    "inspect.getouterframes": "calls inspect.getouterframes",
    "inspect.getinnerframes": "calls inspect.getinnerframes",
    "importlib.import_module": "imports a module by a computed name (importlib.import_module)",
    "importlib.__import__": "imports a module by a computed name (importlib.__import__)",
    "importlib.reload": "reloads a module (importlib.reload)",
    "importlib.util": "uses importlib.util (dynamic imports)",
    "threading.settrace": "installs a tracer (threading.settrace)",
    "traceback.walk_stack": "walks the caller's frames (traceback.walk_stack)",
    "traceback.walk_tb": "walks a traceback's frames (traceback.walk_tb)",
    "operator.attrgetter": "reads attributes by a name given as text (operator.attrgetter)",
}
for _call in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "popen", "kill",
              "killpg", "mkfifo", "mknod", "setsid", "register_at_fork", "pidfd_open",
              "chown", "lchown", "fchown", "setxattr", "removexattr", "execl", "execle",
              "execlp", "execlpe", "execv", "execve", "execvp", "execvpe", "spawnl", "spawnle",
              "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe"):
    QUALIFIED[f"os.{_call}"] = f"calls os.{_call}"
    QUALIFIED[f"posix.{_call}"] = f"calls posix.{_call}"

BUILTIN_CALLS = {
    "exec": "calls exec",
    "eval": "calls eval",
    "compile": "compiles code at run time (compile)",
    "__import__": "imports a module by a computed name (__import__)",
}
ATTRIBUTE_CALLS = ("getattr", "setattr", "delattr")

# Paths into another process's memory, maps, descriptors or environment.
_PROC = re.compile(r"/proc/[^/]+/(mem|maps|fd|fdinfo|environ|task|root|pagemap)\b")


def scan_file(path: Path) -> list[str]:
    """The flags of the module at `path`, one line each ("line 12: reads a frame's caller
    (f_back)"), at most MAX_FLAGS; [] if it cannot be read or does not parse."""
    try:
        with open(path, "rb") as file:
            source = file.read(MAX_SOURCE + 1)
    except OSError:
        return []
    if len(source) > MAX_SOURCE:
        return [f"not scanned: the module is larger than {MAX_SOURCE >> 20} MB"]
    return scan(source)


MAX_LITERAL = 16 << 10
"""characters of one string or bytes literal, or elements of one list literal, past which
the literal is flagged: data carried in the code (a head trained before grading fits in a
few hundred KB of base64); the handout's code needs none"""
SPELLED = 256
"""characters of text spelled in pieces that are put together to be compared with the
flagged names (names are short)"""


def scan(source: str | bytes) -> list[str]:
    """The flags of `source` (see scan_file). Linear in its size: three walks of its tree."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return []
    found: dict[tuple[int, str], None] = {}
    names = _imported_names(tree, found)
    for line, what in _spelled_names(tree):
        if len(found) < MAX_FLAGS:
            found[(line, what)] = None
    for node in ast.walk(tree):
        if len(found) >= MAX_FLAGS:
            break
        for line, what in _judge(node, names):
            if len(found) < MAX_FLAGS:
                found[(line, what)] = None
    return [f"line {line}: {what}" for line, what in sorted(found)]


_WATCHED = {*ATTRIBUTES, *{name.rsplit(".", 1)[1] for name in QUALIFIED}, *MODULES}


def _spelled_names(tree: ast.AST) -> list[tuple[int, str]]:
    """Flagged names spelled in pieces ("f_" + "locals", "".join(["__glo", "bals__"]),
    f"{'tb'}_frame", chr() codes): text put together from literals that comes out as a name
    the scan looks for is hiding it. Each expression's text is made from its parts'
    (children before parents, so a long chain of + costs one pass), at most SPELLED
    characters."""
    nodes = list(ast.walk(tree))
    text: dict[int, str | None] = {}
    flagged = []
    for node in reversed(nodes):
        made: str | None = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            made = node.value if len(node.value) <= SPELLED else None
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = text.get(id(node.left)), text.get(id(node.right))
            made = left + right if left is not None and right is not None else None
        elif isinstance(node, ast.JoinedStr):
            parts = [text.get(id(v)) if isinstance(v, ast.Constant) else
                     text.get(id(v.value)) if isinstance(v, ast.FormattedValue) else None
                     for v in node.values]
            made = "".join(parts) if all(p is not None for p in parts) else None
        elif isinstance(node, (ast.List, ast.Tuple)):
            parts = [text.get(id(e)) for e in node.elts[:64]]
            made = "".join(parts) if len(node.elts) <= 64 and all(p is not None for p in parts) else None
        elif isinstance(node, ast.Call) and not node.keywords and len(node.args) == 1:
            func, arg = node.func, node.args[0]
            if isinstance(func, ast.Attribute) and func.attr == "join" and text.get(id(func.value)) == "":
                made = text.get(id(arg))  # "".join([...])
            elif isinstance(func, ast.Name) and func.id == "chr" and \
                    isinstance(arg, ast.Constant) and isinstance(arg.value, int) and 0 <= arg.value < 0x110000:
                made = chr(arg.value)
        if made is not None and len(made) <= SPELLED:
            text[id(node)] = made
            if not isinstance(node, ast.Constant) and made.strip() in _WATCHED:
                flagged.append((getattr(node, "lineno", 0), f"spells {made.strip()!r} in pieces"))
    return flagged


def _literal_size(node: ast.AST) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        return len(node.value)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return len(node.elts)
    return 0


def _note(found: dict, node: ast.AST, what: str) -> None:
    if len(found) < MAX_FLAGS:
        found[(getattr(node, "lineno", 0), what)] = None


def _imported_names(tree: ast.AST, found: dict) -> dict[str, str]:
    """Each name an import binds -> the module or module attribute it stands for; the
    imports of flagged modules and names are noted in `found` on the way."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                _check_module(found, node, alias.name)
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            _check_module(found, node, node.module)
            for alias in node.names:
                qualified = f"{node.module}.{alias.name}"
                if alias.name == "*":
                    continue
                _check_module(found, node, qualified)
                if qualified in QUALIFIED:
                    _note(found, node, QUALIFIED[qualified])
                names[alias.asname or alias.name] = qualified
    return names


def _check_module(found: dict, node: ast.AST, name: str) -> None:
    parts = name.split(".")
    for end in range(1, len(parts) + 1):
        prefix = ".".join(parts[:end])
        if prefix in MODULES:
            _note(found, node, MODULES[prefix])
            return


def _qualified(node: ast.AST, names: dict[str, str]) -> str | None:
    """`x.attr` where x is a name an import bound: the module attribute it stands for."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
            and node.value.id in names:
        return f"{names[node.value.id]}.{node.attr}"
    return None


def _judge(node: ast.AST, names: dict[str, str]) -> list[tuple[int, str]]:
    line = getattr(node, "lineno", 0)
    if isinstance(node, ast.Attribute):
        qualified = _qualified(node, names)
        if qualified in QUALIFIED:
            return [(line, QUALIFIED[qualified])]
        if node.attr in ATTRIBUTES:
            return [(line, ATTRIBUTES[node.attr])]
    elif isinstance(node, ast.Name):
        if node.id == "__builtins__":
            return [(line, ATTRIBUTES["__builtins__"])]
        if isinstance(node.ctx, ast.Store) and node.id in BUILTIN_CALLS:
            return [(line, f"rebinds the builtin {node.id}")]
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if name in BUILTIN_CALLS:
            return [(line, BUILTIN_CALLS[name])]
        if name in ATTRIBUTE_CALLS and len(node.args) >= 2:
            return _attribute_call(line, name, node.args[0], node.args[1], names)
        if name == "vars" and len(node.args) == 1 and isinstance(node.args[0], ast.Name) \
                and node.args[0].id in names:
            return [(line, f"reads a module's namespace (vars({node.args[0].id}))")]
    if (size := _literal_size(node)) > MAX_LITERAL:
        kind = "list" if isinstance(node, (ast.List, ast.Tuple, ast.Set)) else "literal"
        what = f"{size:,} elements" if kind == "list" else f"{size >> 10} KB"
        return [(line, f"carries data in the code: a {kind} of {what}")]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        if node.value in ATTRIBUTES:
            return [(line, f"names {node.value!r} in a string")]
        if len(node.value) < 4096 and _PROC.search(node.value):
            return [(line, f"names a path into a process ({_PROC.search(node.value).group(0)})")]
    elif isinstance(node, ast.JoinedStr):
        text = "".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str)
                       else "*" for v in node.values[:64])
        if len(text) < 4096 and (match := _PROC.search(text)):
            return [(line, f"names a path into a process ({match.group(0)})")]
    return []


def _attribute_call(line: int, name: str, target: ast.AST, attr: ast.AST,
                    names: dict[str, str]) -> list[tuple[int, str]]:
    """getattr(os, "fork") is os.fork; getattr(os, computed) on a module is a flag itself."""
    module = names.get(target.id) if isinstance(target, ast.Name) else None
    if module is None and isinstance(target, ast.Subscript) and \
            _qualified(target.value, names) == "sys.modules":
        module = "a module of sys.modules"
    if module is None:
        return []
    if isinstance(attr, ast.Constant) and isinstance(attr.value, str):
        qualified = f"{module}.{attr.value}"
        return [(line, QUALIFIED[qualified])] if qualified in QUALIFIED else []
    return [(line, f"{name} on {module} with a computed name")]
