"""Small files and functions (docs/architecture.md): files under 400 lines, functions under 80, unless a
`# long: <why>` comment on the line before the def (or in a file's first 10 lines) says why."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 80
# Files exempt for now, with the reason (remove the entry when the reason is gone).
EXEMPT: dict[str, str] = {}


def _long_comment(lines: list[str], index: int) -> bool:
    return 0 <= index < len(lines) and lines[index].strip().startswith("# long:")


def test_files_and_functions_are_small():
    too_long = []
    for path in sorted((ROOT / "vittle_cli").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name in EXEMPT:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) >= MAX_FILE_LINES and not any(_long_comment(lines, i) for i in range(10)):
            too_long.append(f"{name}: {len(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and not _long_comment(lines, start - 2):
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "split these by job (or say why with `# long: ...`):\n" + "\n".join(too_long)
